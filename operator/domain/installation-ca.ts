// The installation's CA Secret, the one every operator-issued relay
// certificate comes from, in the domain reconcile's gather → plan → apply:
// - gathered (readCa): the Secret read and decoded, through the Controller's
//   cache (one read a minute; an event on the Secret forgets it);
// - planned (planCa, pure): create it, take the steps of its rotation
//   (ca-rotation.ts: announce, promote, drop retired CAs), or nothing: the CA
//   as it is serves the domain's certificate;
// - applied (applyCa): a new CA's key is made here, never planned. Created
//   with POST, never applied: of two racing operators the second gets 409.
//   Each rotation step is an apply on the condition that the Secret is still
//   the version read: of two racing operators one writes, the other gets 409.
//   Either way the reconcile gathers again and reads the winner's CA.
import type * as k8s from "@kubernetes/client-node";
import { isDeepStrictEqual } from "node:util";
import { rfc3339 } from "../conditions.js";
import { recordEvent } from "../events.js";
import { ActionNeeded } from "../failures.js";
import { ApiError, type Cluster } from "../kube/cluster.js";
import type { TimedCache } from "../timed-cache.js";
import {
  advanceCa,
  caAnnotations,
  caSecretContents,
  defaultCaRotationNoticeMs,
  nextCaChange,
  nextCertKey,
  nextKeyKey,
  readCaState,
  rotateAnnotation,
  trustBundle,
  type CaState,
  type RotationSettings,
  type RotationStep,
} from "../tls/ca-rotation.js";
import { defaultCertificatePolicy, inspectCertificate, newCertificateAuthority } from "../tls/certificates.js";
import { caNameConstraints, defaultCaSecret, type CaRead, type CertificateAuthority } from "./certificate.js";
import type { OperatorSettings } from "./render.js";

/** The CA Secret as read and decoded: where its rotation stands, and what it holds now. */
export interface CaSecret {
  state: CaState;
  /** Its data, decoded, and annotations, as read: what planCa compares the wanted contents with. */
  data: Readonly<Record<string, string | undefined>>;
  annotations: Readonly<Record<string, string>>;
  resourceVersion: string;
  uid: string;
}

/** The CA Secret as gathered: missing (to be created), read, or unusable (CAInvalid on the domain). */
export type CaGathered = { missing: true } | { secret: CaSecret } | { invalid: string };

/** What the apply step does with the CA Secret; no key in it: a new CA's is made when it is applied. */
export type CaAction = { create: true } | { advance: { steps: RotationStep[]; resourceVersion: string } };

/** How long a CA read is used without an event on its Secret. */
const caReadTtlMs = 60_000;

const caLabels = { "app.kubernetes.io/managed-by": "smtp-connector", "app.kubernetes.io/component": "ca" };

const decode = (value: string | undefined) => (value === undefined ? undefined : Buffer.from(value, "base64").toString("utf8"));

const caSecretRef = (settings: OperatorSettings) => settings.caSecret ?? defaultCaSecret;

function rotationSettings(settings: OperatorSettings): RotationSettings {
  const policy = settings.certificates ?? defaultCertificatePolicy;
  return {
    constraints: caNameConstraints(settings),
    noticeMs: policy.caRotationNoticeMs ?? defaultCaRotationNoticeMs,
    certificateLifetimeMs: policy.durationMs,
  };
}

/** What the API refused (no permission, unreachable): retried with backoff, on the domain as ReconcileFailed, not as a bad CA. */
function apiFailure(settings: OperatorSettings, error: ApiError): Error {
  const { namespace, name } = caSecretRef(settings);
  return new Error(
    `reading or creating the operator's CA Secret ${namespace}/${name} failed (does the namespace exist? set --ca-secret to the operator's own namespace): ${error.message}`,
  );
}

/** The CA Secret, read through the Controller's cache (`cache`); read again at once when its rotation's next step is due. */
export async function readCa(cluster: Cluster, settings: OperatorSettings, now: Date, cache: TimedCache<CaGathered>): Promise<CaGathered> {
  const { namespace, name } = caSecretRef(settings);
  const key = `${namespace}/${name}`;
  const load = async (): Promise<CaGathered> => {
    const secret = await cluster.read<k8s.V1Secret>("v1", "Secret", namespace, name);
    return secret ? { secret: decodeCaSecret(settings, secret) } : { missing: true };
  };
  try {
    let read = await cache.get(key, caReadTtlMs, load);
    // A read whose phase has ended (phase 2 due, a retired CA to drop) is read again now, not up to a minute late.
    const due = "secret" in read ? nextCaChange(read.secret.state, rotationSettings(settings).certificateLifetimeMs) : undefined;
    if (due && now.getTime() >= due.getTime()) {
      cache.clear();
      read = await cache.get(key, caReadTtlMs, load);
    }
    return read;
  } catch (error) {
    if (error instanceof ApiError) throw apiFailure(settings, error);
    // Not kept in the cache (a failed load never is): the next reconcile reads it again.
    return { invalid: (error as Error).message };
  }
}

/** The CA Secret decoded; throws a readable error when its CA cannot be used. */
function decodeCaSecret(settings: OperatorSettings, secret: k8s.V1Secret): CaSecret {
  const { namespace, name } = caSecretRef(settings);
  const data = Object.fromEntries(Object.entries(secret.data ?? {}).map(([key, value]) => [key, decode(value)]));
  const annotations = secret.metadata?.annotations ?? {};
  let state: CaState;
  try {
    state = readCaState(data, annotations);
  } catch (error) {
    throw new Error(`the operator's CA Secret ${namespace}/${name}: ${(error as Error).message}`);
  }
  for (const pair of [state.signing, ...(state.next ? [state.next.pair] : [])]) {
    if (!inspectCertificate(pair.certPem, pair.keyPem).keyMatches)
      throw new Error(`the operator's CA Secret ${namespace}/${name}: a key does not belong to its certificate (tls.key, next.key)`);
  }
  return { state, data, annotations, resourceVersion: secret.metadata?.resourceVersion ?? "", uid: secret.metadata?.uid ?? "" };
}

/** The CA (signing key pair, trust bundle, rotation state) a CA Secret's state gives. */
function authority(state: CaState, settings: OperatorSettings): CertificateAuthority {
  const nextChange = nextCaChange(state, rotationSettings(settings).certificateLifetimeMs);
  return { ...state.signing, trustPem: trustBundle(state), state, ...(nextChange ? { nextChange } : {}) };
}

/**
 * What to do with the CA Secret as gathered: create it, write the steps its rotation takes now (or repair
 * our keys and annotations, edited by hand), or nothing, and then the CA serves the domain's certificate.
 * Pure: which steps is decided here (advanceCa is level-based); the next CA's key is made by applyCa.
 */
export function planCa(gathered: CaGathered, settings: OperatorSettings, now: Date): { ca: CaRead } | { action: CaAction } {
  if ("missing" in gathered) return { action: { create: true } };
  if ("invalid" in gathered) return { ca: { invalid: gathered.invalid } };
  const { secret } = gathered;
  let made = false;
  let advanced: { state: CaState; steps: RotationStep[] };
  try {
    // A stand-in for the next CA: a step that makes one writes the Secret anyway, and applyCa makes the real one.
    advanced = advanceCa(secret.state, now, rotationSettings(settings), secret.annotations[rotateAnnotation], () => {
      made = true;
      return secret.state.signing;
    });
  } catch (error) {
    const { namespace, name } = caSecretRef(settings);
    return { ca: { invalid: `the operator's CA Secret ${namespace}/${name}: ${(error as Error).message}` } };
  }
  if (!made && sameContents(secret, advanced.state)) return { ca: { ca: authority(secret.state, settings) } };
  return { action: { advance: { steps: advanced.steps, resourceVersion: secret.resourceVersion } } };
}

/** Whether the Secret already holds a state: only our keys and annotations count (the rotate annotation, labels and the rest are not ours). */
function sameContents(secret: CaSecret, state: CaState): boolean {
  const wanted = caSecretContents(state);
  const ownKeys = new Set([...Object.keys(wanted.data), "tls.crt", "tls.key", "ca.crt", nextCertKey, nextKeyKey]);
  const ours = Object.fromEntries(
    caAnnotations.flatMap((key) => (secret.annotations[key] !== undefined ? [[key, secret.annotations[key]]] : [])),
  );
  return [...ownKeys].every((key) => secret.data[key] === wanted.data[key]) && isDeepStrictEqual(ours, wanted.annotations);
}

/**
 * Does what planCa decided, onto the Secret as gathered; a new CA's key is made now. A 409 is another
 * operator that wrote first: nothing more here, the next gather reads its CA.
 */
export async function applyCa(
  cluster: Cluster,
  settings: OperatorSettings,
  gathered: CaGathered,
  action: CaAction,
  now: Date,
): Promise<void> {
  const { namespace, name } = caSecretRef(settings);
  const rotation = rotationSettings(settings);
  const newCa = () => newCertificateAuthority(namespace, now, rotation.constraints);
  try {
    if ("create" in action) {
      const created = newCa();
      const { status } = await cluster.write(
        "POST",
        `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets`,
        {
          apiVersion: "v1",
          kind: "Secret",
          metadata: { name, namespace, labels: caLabels },
          type: "kubernetes.io/tls",
          stringData: { "tls.crt": created.certPem, "tls.key": created.keyPem, "ca.crt": created.certPem },
        },
        [404, 409],
      );
      if (status === 404) {
        // The Secret's namespace is missing (e.g. the operator started by hand on a fresh cluster).
        throw new ActionNeeded(
          `the operator cannot keep its CA: namespace ${namespace} (--ca-secret ${namespace}/${name}) does not exist; create it (kubectl create namespace ${namespace}) or point --ca-secret at an existing namespace`,
        );
      }
      return;
    }
    if (!("secret" in gathered)) throw new Error(`applyCa: the CA Secret ${namespace}/${name} was not read`);
    const { secret } = gathered;
    // The same read and time give the same steps (advanceCa is level-based); the next CA is made now.
    const { state, steps } = advanceCa(secret.state, now, rotation, secret.annotations[rotateAnnotation], newCa);
    const wanted = caSecretContents(state);
    await cluster.applyIfUnchanged(
      {
        apiVersion: "v1",
        kind: "Secret",
        metadata: {
          name,
          namespace,
          labels: caLabels,
          ...(Object.keys(wanted.annotations).length > 0 ? { annotations: wanted.annotations } : {}),
        },
        type: "kubernetes.io/tls",
        data: Object.fromEntries(Object.entries(wanted.data).map(([key, value]) => [key, Buffer.from(value).toString("base64")])),
      },
      action.advance.resourceVersion,
    );
    const on = { apiVersion: "v1", kind: "Secret", name, namespace, uid: secret.uid };
    for (const step of steps) await recordEvent(cluster, on, "Normal", ...rotationEvent(step));
  } catch (error) {
    if (error instanceof ApiError) {
      if (error.code === 409) return;
      throw apiFailure(settings, error);
    }
    throw error;
  }
}

/** What a platform engineer reads in `kubectl describe secret <the CA Secret>` for each rotation step. */
function rotationEvent(step: RotationStep): [string, string] {
  switch (step.step) {
    case "published":
    case "next-replaced":
      return [
        "CARotationStarted",
        `a new CA is published in ca.crt beside the signing one (${step.reason}); it signs relay certificates from ${rfc3339(step.signsFrom)}: give every customer whose server keeps a copy of ca.crt the new ca.crt before then`,
      ];
    case "promoted":
      return [
        "CARotated",
        "the new CA signs relay certificates now; they are reissued, and the old CA stays in ca.crt until none of its certificates can be valid",
      ];
    case "retired-dropped":
      return [
        "CARetired",
        `${step.count} replaced CA${step.count === 1 ? "" : "s"} dropped from ca.crt: no certificate of ${step.count === 1 ? "it" : "them"} can still be valid`,
      ];
  }
}
