// Disconnecting a domain. A finalizer holds the SmtpDomain until its relay can
// no longer authenticate anyone: every credential version (inbound, and the
// helpdesk's submission login) is revoked in the relay config, the relay is scaled to zero (running pods drain on SIGTERM)
// and the Service stops taking connections; then the finalizer goes and the
// garbage collector removes what the domain owned. Nobody else's objects are
// touched: only objects this domain controls are written.
import type * as k8s from "@kubernetes/client-node";
import type { SmtpDomain } from "../../crds/schema.js";
import { parseConfig } from "../../relay/contract/config-parser.js";
import { replaceConditions } from "../conditions.js";
import { involved, recordEvent } from "../events.js";
import { ApiError, ownedBy, type Cluster } from "../kube/cluster.js";
import type { Logger } from "../../lib/log.js";
import { names, relayConfigSecret, relayDeployment, type OperatorSettings } from "./render.js";

export const disconnectFinalizer = "smtpconnector.dev/disconnect";

const finalizersApply = (domain: SmtpDomain, finalizers: string[]) => ({
  apiVersion: "smtpconnector.dev/v1alpha1",
  kind: "SmtpDomain",
  metadata: { name: domain.metadata.name!, namespace: domain.metadata.namespace!, finalizers },
});

/** Adds our finalizer (server-side apply: only our entry of the list is ours). */
export async function ensureFinalizer(cluster: Cluster, domain: SmtpDomain): Promise<void> {
  if (domain.metadata.finalizers?.includes(disconnectFinalizer)) return;
  await cluster.applyObject("smtpdomains", finalizersApply(domain, [disconnectFinalizer]));
}

/** Says on the domain, while the finalizer works, that it is being disconnected (its addresses' DomainReady follows). */
async function announce(cluster: Cluster, domain: SmtpDomain): Promise<void> {
  if (domain.status?.conditions?.some((c) => c.type === "Ready" && c.reason === "Disconnecting")) return;
  const message =
    "the SmtpDomain is being deleted: every credential version is revoked in the relay and the relay scaled to zero, then everything the domain owns is removed";
  const generation = domain.metadata.generation ?? 0;
  const conditions = replaceConditions(
    domain.status?.conditions,
    [
      { type: "Ready", status: "False", reason: "Disconnecting", message },
      { type: "Reconciling", status: "True", reason: "Disconnecting", message },
      { type: "Stalled", status: "False", reason: "Disconnecting", message },
    ],
    generation,
    new Date(),
  );
  await cluster.applyStatus(
    "smtpdomains",
    "SmtpDomain",
    domain.metadata.namespace!,
    domain.metadata.name!,
    { ...domain.status, observedGeneration: generation, conditions },
    domain.metadata.resourceVersion,
  );
  await recordEvent(cluster, involved(domain), "Normal", "Disconnecting", message);
}

export async function disconnect(cluster: Cluster, domain: SmtpDomain, settings: OperatorSettings, log: Logger): Promise<void> {
  try {
    await announce(cluster, domain);
  } catch (error) {
    // Gone already, or changed since the cache saw it (a reconcile from a cache that had not seen the
    // deletion end): the finalizer's work is done or redone from a fresh read.
    if (error instanceof ApiError && (error.code === 404 || error.code === 409)) return;
    // Being told is not worth holding the disconnect for.
    log.warn("disconnect: could not say so in status", {
      domain: `${domain.metadata.namespace}/${domain.metadata.name}`,
      code: error instanceof ApiError ? error.code : undefined,
    });
  }
  await revokeThenRelease(cluster, domain, log, () => revoke(cluster, domain, settings));
}

/**
 * Disconnecting a domain that does not match the schema (InvalidObject): a user deleting a broken object
 * sees it go. Done is what needs nothing of its spec: every credential version is revoked in its relay
 * config (by name and owner, from metadata); then the finalizer goes and the garbage collector removes
 * the relay with everything else it owned. Its Deployment is not scaled to zero first: that is rendered
 * from the spec, and the relay refuses every credential from the config's reload on.
 */
export async function disconnectInvalid(
  cluster: Cluster,
  domain: Pick<SmtpDomain, "apiVersion" | "kind" | "metadata">,
  log: Logger,
): Promise<void> {
  // Only metadata is used: the names and owner of its objects (render.ts) come from it, none from the spec.
  const bare: SmtpDomain = { apiVersion: domain.apiVersion, kind: domain.kind, metadata: domain.metadata, spec: {} as SmtpDomain["spec"] };
  await revokeThenRelease(cluster, bare, log, () => revokeConfig(cluster, bare));
}

async function revokeThenRelease(cluster: Cluster, domain: SmtpDomain, log: Logger, revoking: () => Promise<void>): Promise<void> {
  try {
    await revoking();
  } catch (error) {
    // A namespace being deleted refuses writes (403) and objects may be gone (404): everything
    // the domain owned is on its way out anyway, so the finalizer must not hold it forever.
    if (!(error instanceof ApiError && [403, 404, 409, 422].includes(error.code))) throw error;
    log.warn("disconnect: could not revoke before removal", {
      domain: `${domain.metadata.namespace}/${domain.metadata.name}`,
      code: error.code,
    });
  }
  // Then let go: the garbage collector deletes everything the domain owned. Onto the version read only:
  // an apply onto a domain that is gone already would try to create it again.
  const latest = await cluster.get(
    `/apis/smtpconnector.dev/v1alpha1/namespaces/${encodeURIComponent(domain.metadata.namespace!)}/smtpdomains/${encodeURIComponent(domain.metadata.name!)}`,
    [404],
  );
  if (latest.status === 404) return;
  await cluster.applyObject("smtpdomains", finalizersApply(domain, []));
}

async function revoke(cluster: Cluster, domain: SmtpDomain, settings: OperatorSettings): Promise<void> {
  await revokeConfig(cluster, domain);
  const namespace = domain.metadata.namespace!;
  const uid = domain.metadata.uid!;
  const n = names(domain);
  const deployment = await cluster.read<k8s.V1Deployment>("apps/v1", "Deployment", namespace, n.relay);
  if (deployment && ownedBy(deployment, uid) && deployment.spec?.replicas !== 0) {
    const stopped = relayDeployment(domain, settings);
    (stopped.spec as { replicas: number }).replicas = 0;
    await cluster.apply(stopped);
  }
}

/** Every credential version (inbound and submission) revoked in the relay config, and no address or sender left. */
async function revokeConfig(cluster: Cluster, domain: SmtpDomain): Promise<void> {
  const namespace = domain.metadata.namespace!;
  const uid = domain.metadata.uid!;
  const n = names(domain);
  const config = await cluster.read<k8s.V1Secret>("v1", "Secret", namespace, n.config);
  if (config && ownedBy(config, uid)) {
    const relay = parseConfig(Buffer.from(config.data?.["relay.yaml"] ?? "", "base64").toString(), `Secret ${n.config}`);
    for (const entry of relay.domains) {
      for (const credential of entry.credentials) credential.state = "Revoked";
      entry.addresses = [];
      // Outbound stops too: the helpdesk's submission login is refused, no sender routes.
      if (entry.outbound) {
        for (const credential of entry.outbound.submission) credential.state = "Revoked";
        entry.outbound.senders = [];
        // Its key files are not in the revoked Secret either.
        entry.outbound.dkim = [];
      }
    }
    // The whole object, as always: an apply that leaves out fields we own would remove them (owner references too).
    await cluster.apply(relayConfigSecret(domain, relay));
  }
}
