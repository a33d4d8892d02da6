// Disconnecting a domain. A finalizer holds the SmtpDomain until its relay can
// no longer authenticate anyone: every credential version (inbound, and the
// helpdesk's submission login) is revoked in the relay config, the relay is scaled to zero (running pods drain on SIGTERM)
// and the Service stops taking connections; then the finalizer goes and the
// garbage collector removes what the domain owned. Nobody else's objects are
// touched: only objects this domain controls are written.
import type * as k8s from "@kubernetes/client-node";
import type { SmtpDomain } from "../../crds/schema.js";
import { parseConfig } from "../../relay/config/load.js";
import { ApiError, ownedBy, type Cluster } from "../kube/cluster.js";
import type { Logger } from "../../relay/ops/log.js";
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

export async function disconnect(cluster: Cluster, domain: SmtpDomain, settings: OperatorSettings, log: Logger): Promise<void> {
  try {
    await revoke(cluster, domain, settings);
  } catch (error) {
    // A namespace being deleted refuses writes (403) and objects may be gone (404): everything
    // the domain owned is on its way out anyway, so the finalizer must not hold it forever.
    if (!(error instanceof ApiError && [403, 404, 409, 422].includes(error.code))) throw error;
    log.warn("disconnect: could not revoke before removal", { domain: `${domain.metadata.namespace}/${domain.metadata.name}`, code: error.code });
  }
  // Then let go: the garbage collector deletes everything the domain owned.
  await cluster.applyObject("smtpdomains", finalizersApply(domain, []));
}

async function revoke(cluster: Cluster, domain: SmtpDomain, settings: OperatorSettings): Promise<void> {
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
  const deployment = await cluster.read<k8s.V1Deployment>("apps/v1", "Deployment", namespace, n.relay);
  if (deployment && ownedBy(deployment, uid) && deployment.spec?.replicas !== 0) {
    const stopped = relayDeployment(domain, settings);
    (stopped.spec as { replicas: number }).replicas = 0;
    await cluster.apply(stopped);
  }
}
