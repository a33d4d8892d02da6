// Failures a reconcile cannot get past, said on the resource they block
// (condition reason ReconcileFailed and a Warning Event), not only in the
// operator's log. ActionNeeded marks the ones that only a change from someone
// fixes (a missing namespace, missing RBAC): those are Stalled, the rest are
// retried with backoff.
import { ApiError } from "./kube/access.js";

export class ActionNeeded extends Error {
  override name = "ActionNeeded";
}

/** The API server's own explanation (its Status message), when there is one. */
function apiReason(error: ApiError): string {
  try {
    const status = JSON.parse(error.body) as { message?: unknown };
    if (typeof status.message === "string") return status.message;
  } catch {
    // Not a Status object: the code says enough.
  }
  return "";
}

/** One line: what failed and what to do. Never a secret (requests and API messages carry none). */
export function failureMessage(error: unknown): string {
  if (error instanceof ActionNeeded) return error.message;
  if (error instanceof ApiError) {
    const why = apiReason(error);
    if (error.code === 403)
      return `the operator may not ${error.request} (${why || "Forbidden"}): its ServiceAccount lacks a permission of the chart's ClusterRole; reinstall or fix the RBAC`;
    return `${error.request} failed with HTTP ${error.code}${why ? `: ${why}` : ""}; retried with backoff, see the operator's log`;
  }
  return `${error instanceof Error ? error.message : String(error)}; retried with backoff, see the operator's log`;
}

/** Whether only a change from someone fixes it (the resource is then Stalled). */
export const needsAction = (error: unknown) => error instanceof ActionNeeded || (error instanceof ApiError && error.code === 403);
