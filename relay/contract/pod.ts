// What a relay pod is, as the relay expects to be run: the ports it listens
// on, where its Secrets are mounted, and the command. The operator renders its
// relay Deployments, Services and NetworkPolicies from these; the relay config
// the operator writes points into these mounts.
import { posix } from "node:path";

/**
 * What the relay listens on inside its pod. All unprivileged (ADR 0012): the relay runs as uid 65532 with every
 * capability dropped, and runtimes that keep ports below 1024 privileged (containerd 1.x by default) refuse it a
 * bind on 587 or 465. The customer-facing Service maps its ports onto these.
 */
export const relayPorts = { starttls: 8587, implicitTls: 8465, forwarded: 8025, health: 8080, submission: 2587, control: 8443 } as const;

const mountRoot = "/etc/smtp-connector";

/** Where each Secret the relay reads is mounted (read-only), and its one writable directory. */
export const relayMounts = {
  /** The relay config Secret: relay.yaml and the files that travel with it (sender passwords and CAs, DKIM keys). */
  config: `${mountRoot}/config`,
  /** The relay's kubernetes.io/tls Secret. */
  tls: `${mountRoot}/tls`,
  /** The inbound next hop's AUTH Secret (its `password` key). */
  nextHop: `${mountRoot}/next-hop`,
  /** The webhook's signing-key Secret. */
  webhook: `${mountRoot}/webhook`,
  /** Scratch space (the DKIM signing spool of large messages); the root file system is read-only. */
  tmp: "/tmp",
} as const;

export const configFile = posix.join(relayMounts.config, "relay.yaml");

const MiB = 1024 * 1024;

/**
 * Disk the outbound signing spool may use at once (the relay answers 452 4.3.1 beyond it, and the helpdesk's queue
 * retries): room for two messages of the largest size, and at least 64 MiB.
 */
export function spoolBudgetBytes(maxMessageBytes: number): number {
  return Math.max(64 * MiB, 2 * maxMessageBytes);
}

/**
 * Memory the forwarded listener's messages may hold at once (each is held whole until its checks are done; the
 * relay answers 452 4.3.1 beyond it): room for two messages of the largest size, and at least 64 MiB, as the spool.
 * Within the relay pod's default memory limit (512Mi) with a domain's maxMessageSize raised to 100Mi.
 */
export function forwardedMemoryBytes(maxMessageBytes: number): number {
  return Math.max(64 * MiB, 2 * maxMessageBytes);
}

/**
 * The pod's /tmp (an emptyDir, which the kubelet evicts the pod for outgrowing): the spool's budget and 16 MiB for
 * the rest, so the spool is refused a message before the pod is evicted with every session in it.
 */
export function tmpSizeLimit(maxMessageBytes: number): string {
  return `${Math.ceil(spoolBudgetBytes(maxMessageBytes) / MiB) + 16}Mi`;
}

/** A file under a mount, as the config names it: relative to the config file's directory, which the relay resolves. */
export function configPath(mount: Exclude<keyof typeof relayMounts, "tmp">, file: string): string {
  return posix.relative(relayMounts.config, posix.join(relayMounts[mount], file)) || file;
}

/** The relay's command in its container (the image's dist/, as `tsc -p tsconfig.build.json` emits it). */
export function relayCommand(config = configFile): string[] {
  return ["node", "dist/relay/main.js", "--config", config];
}
