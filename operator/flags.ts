// The operator's command line: every flag once, with its default, the
// environment variable that sets it, and what it does. `--help` prints this
// table, so the usage can never leave a flag out; the chart's values set the
// same flags (charts/smtp-connector/templates/deployment.yaml).
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { defaultLimits, type Limits } from "./address/rules.js";
import { defaultControlUrl } from "./address/verification-io.js";
import { defaultCaSecret } from "./domain/certificate.js";
import { parseDuration } from "./domain/credentials.js";
import { parseRelayPodTemplate } from "./domain/pod-template.js";
import { quantityInteger } from "./kube/quantity.js";
import type { RelayPodTemplate } from "../crds/schema.js";
import { leaseName } from "./rbac.js";
import { defaultTrustedArcSealers, type ForwardedSettings } from "./domain/render.js";
import { isDnsServer } from "../relay/contract/config-parser.js";
import { parseHostnameSuffixes } from "./tls/name-policy.js";
import { caRenewBeforeMs } from "./tls/ca-rotation.js";

interface Flag {
  type: "string" | "boolean";
  /** Shown in --help as the value's form. */
  value?: string;
  default?: string | boolean;
  env?: string;
  help: string;
}

const env = process.env;

export const flags = {
  kubeconfig: { type: "string", value: "FILE", help: "Kubeconfig to use outside a cluster; in a cluster the ServiceAccount is used." },
  context: { type: "string", value: "NAME", help: "The kubeconfig context to use (default: its current-context)." },
  "metrics-port": { type: "string", value: "PORT", default: "8080", help: "Port of /healthz, /readyz and /metrics." },
  "relay-image": {
    type: "string",
    value: "IMAGE",
    env: "SMTPC_RELAY_IMAGE",
    default: env.SMTPC_RELAY_IMAGE ?? "ghcr.io/smtp-connector/smtp-connector:0.1.0",
    help: "Image of the relay Deployments.",
  },
  "relay-host-suffix": {
    type: "string",
    value: "SUFFIX",
    env: "SMTPC_RELAY_HOST_SUFFIX",
    default: env.SMTPC_RELAY_HOST_SUFFIX ?? "relay.smtp-connector.local",
    help: "Default relay host name: <SmtpDomain name>.<namespace>.<SUFFIX> (spec.relay.hostnames overrides it).",
  },
  "allowed-hostname-suffixes": {
    type: "string",
    value: "relay.example.com,mail.example.org",
    env: "SMTPC_ALLOWED_HOSTNAME_SUFFIXES",
    default: env.SMTPC_ALLOWED_HOSTNAME_SUFFIXES ?? "",
    help: "DNS suffixes the names in an SmtpDomain's spec.relay.hostnames must equal or lie under (no wildcards); the installation's CA is constrained to them, the default relay host suffix and the Services' cluster names. Empty: only the default relay host name.",
  },
  "relay-pod-template": {
    type: "string",
    value: "JSON",
    env: "SMTPC_RELAY_POD_TEMPLATE",
    default: env.SMTPC_RELAY_POD_TEMPLATE ?? "",
    help: "The installation's relay pod template, in the shape of SmtpDomain spec.relay.template.pod (JSON or YAML): each field a domain sets replaces it; labels and annotations merge key by key.",
  },
  "relay-max-message-size": {
    type: "string",
    value: "QUANTITY",
    env: "SMTPC_RELAY_MAX_MESSAGE_SIZE",
    default: env.SMTPC_RELAY_MAX_MESSAGE_SIZE ?? "25Mi",
    help: "The largest message size an SmtpDomain may set (spec.relay.limits.maxMessageSize, default 25Mi), 1Ki to 1Gi; a domain asking more gets this.",
  },
  "relay-max-recipients": {
    type: "string",
    value: "N",
    env: "SMTPC_RELAY_MAX_RECIPIENTS",
    default: env.SMTPC_RELAY_MAX_RECIPIENTS ?? "50",
    help: "The most recipients per message an SmtpDomain may set (spec.relay.limits.maxRecipients, default 50), 1 to 1000; a domain asking more gets this.",
  },
  "system-domains": {
    type: "string",
    value: "a.example,b.example",
    env: "SMTPC_SYSTEM_DOMAINS",
    default: env.SMTPC_SYSTEM_DOMAINS ?? "",
    help: "The helpdesk's own mail domains: never connected (SmtpDomain: SystemDomain, SupportAddress: SystemAddress), never sent through a customer's server.",
  },
  "verification-sender": {
    type: "string",
    value: "ADDRESS",
    env: "SMTPC_VERIFICATION_SENDER",
    default: env.SMTPC_VERIFICATION_SENDER ?? "",
    help: "Sender of inbound verification emails (default verify@<first system domain>).",
  },
  "verification-smtp": {
    type: "string",
    value: "HOST:PORT",
    env: "SMTPC_VERIFICATION_SMTP",
    default: env.SMTPC_VERIFICATION_SMTP ?? "",
    help: "An MTA that routes customers' domains to their servers, for inbound verification emails.",
  },
  "relay-control-url": {
    type: "string",
    value: "URL",
    env: "SMTPC_RELAY_CONTROL_URL",
    default: env.SMTPC_RELAY_CONTROL_URL ?? defaultControlUrl,
    help: "URL template of a relay's control API ({name}, {namespace}); HTTPS only.",
  },
  "relay-control-endpoints": {
    type: "string",
    value: "pods|url",
    env: "SMTPC_RELAY_CONTROL_ENDPOINTS",
    default: env.SMTPC_RELAY_CONTROL_ENDPOINTS ?? "pods",
    help: "pods: every ready relay pod (EndpointSlices), the URL only while none is known; url: the URL alone (an operator outside the cluster).",
  },
  "dns-resolver": {
    type: "string",
    value: "IP[:PORT]",
    env: "SMTPC_DNS_RESOLVER",
    default: env.SMTPC_DNS_RESOLVER ?? "",
    help: "DNS server for the DKIM record check; empty: records are confirmed by spec only.",
  },
  "trusted-arc-sealers": {
    type: "string",
    value: "microsoft.com,google.com",
    env: "SMTPC_TRUSTED_ARC_SEALERS",
    default: env.SMTPC_TRUSTED_ARC_SEALERS ?? defaultTrustedArcSealers.join(","),
    help: "Forwarded mode: the ARC sealers (d= of the latest ARC-Seal) whose chain the relays count, at most 32; Microsoft 365 seals with microsoft.com, Google with google.com. Empty: no ARC chain counts.",
  },
  "forwarded-dns-servers": {
    type: "string",
    value: "IP[:PORT],...",
    env: "SMTPC_FORWARDED_DNS_SERVERS",
    default: env.SMTPC_FORWARDED_DNS_SERVERS ?? "",
    help: "Forwarded mode: DNS servers (at most 4) the relays ask for SPF, DKIM, DMARC and ARC of forwarded mail; empty: the relay pod's resolver.",
  },
  "ca-secret": {
    type: "string",
    value: "NAMESPACE/NAME",
    env: "SMTPC_CA_SECRET",
    default: env.SMTPC_CA_SECRET ?? `${env.POD_NAMESPACE ?? defaultCaSecret.namespace}/${defaultCaSecret.name}`,
    help: "Where the installation's CA is kept (created on first use; the namespace must exist).",
  },
  "certificate-duration": { type: "string", value: "DURATION", default: "2160h", help: "Lifetime of operator-issued relay certificates." },
  "certificate-renew-before": {
    type: "string",
    value: "DURATION",
    default: "720h",
    help: "How long before expiry an operator-issued relay certificate is renewed.",
  },
  "ca-rotation-notice": {
    type: "string",
    value: "DURATION",
    default: "720h",
    help: "How long a new installation CA is published in ca.crt (beside the signing one) before it signs relay certificates: the time customers have to install the new ca.crt; 0s: it signs at once.",
  },
  "max-domains-per-namespace": {
    type: "string",
    value: "N",
    env: "SMTPC_MAX_DOMAINS_PER_NAMESPACE",
    default: env.SMTPC_MAX_DOMAINS_PER_NAMESPACE ?? String(defaultLimits.domainsPerNamespace),
    help: "SmtpDomains served per account (namespace); the oldest win, the rest say LimitExceeded.",
  },
  "max-addresses-per-domain": {
    type: "string",
    value: "N",
    env: "SMTPC_MAX_ADDRESSES_PER_DOMAIN",
    default: env.SMTPC_MAX_ADDRESSES_PER_DOMAIN ?? String(defaultLimits.addressesPerDomain),
    help: "SupportAddresses served per SmtpDomain.",
  },
  "max-addresses-per-namespace": {
    type: "string",
    value: "N",
    env: "SMTPC_MAX_ADDRESSES_PER_NAMESPACE",
    default: env.SMTPC_MAX_ADDRESSES_PER_NAMESPACE ?? String(defaultLimits.addressesPerNamespace),
    help: "SupportAddresses served per account (namespace).",
  },
  "watch-namespaces": {
    type: "string",
    value: "a,b",
    env: "SMTPC_WATCH_NAMESPACES",
    default: env.SMTPC_WATCH_NAMESPACES ?? "",
    help: "Watch and act only in these namespaces (RBAC: a Role in each, no ClusterRole); empty: every namespace.",
  },
  "leader-elect": {
    type: "boolean",
    default: false,
    help: "Only the holder of the leader Lease reconciles (run two replicas for a standby).",
  },
  "leader-election-namespace": {
    type: "string",
    value: "NAMESPACE",
    default: env.POD_NAMESPACE ?? "smtp-connector-system",
    help: "Namespace of the leader Lease; also the one namespace allowed to reach the relays' control API.",
  },
  "lease-name": {
    type: "string",
    value: "NAME",
    default: leaseName,
    help: "Name of the leader Lease (two installations in one namespace need two names; the chart's Role grants this one).",
  },
  "lease-duration-seconds": { type: "string", value: "SECONDS", default: "15", help: "Leader Lease duration, 2 to 300." },
  help: { type: "boolean", default: false, help: "Print this help and exit." },
} as const satisfies Record<string, Flag>;

/** Every flag, one per line, with its default and environment variable. */
export function helpText(): string {
  const lines = Object.entries(flags).map(([name, flag]: [string, Flag]) => {
    const head = `  --${name}${flag.value ? ` ${flag.value}` : ""}`;
    const defaults = [
      flag.type === "string" && flag.default !== undefined && flag.default !== "" ? `default ${String(flag.default)}` : undefined,
      flag.env ? `env ${flag.env}` : undefined,
    ].filter(Boolean);
    return `${head}\n      ${flag.help}${defaults.length > 0 ? ` (${defaults.join("; ")})` : ""}`;
  });
  return ["usage: operator [flags]", "", "The smtp-connector operator. Flags:", ...lines, ""].join("\n");
}

export interface OperatorFlags {
  help: boolean;
  caSecret: { namespace: string; name: string };
  certificates: { durationMs: number; renewBeforeMs: number; caRotationNoticeMs: number };
  dnsResolver: string;
  forwarded: ForwardedSettings;
  verification: { sender: string; smtp?: { host: string; port: number }; controlUrl: string; perPod: boolean };
  kubeconfig: string | undefined;
  context: string | undefined;
  port: number;
  relayImage: string;
  relayHostSuffix: string;
  allowedHostnameSuffixes: string[];
  relayPodTemplate: RelayPodTemplate | undefined;
  relayLimitCaps: { maxMessageBytes: number; maxRecipients: number };
  systemDomains: string[];
  limits: Limits;
  /** The namespace-scoped mode's namespaces; undefined: all. */
  watchNamespaces: string[] | undefined;
  leaderElect: boolean;
  leaseNamespace: string;
  leaseName: string;
  leaseMs: number;
}

/** Parses and checks the command line; throws with a message naming the flag. */
export function parseFlags(args: string[]): OperatorFlags {
  const options: ParseArgsOptionsConfig = Object.fromEntries(
    Object.entries(flags).map(([name, f]: [string, Flag]) => [
      name,
      f.type === "boolean"
        ? { type: "boolean" as const, default: f.default === true }
        : { type: "string" as const, ...(f.default !== undefined ? { default: String(f.default) } : {}) },
    ]),
  );
  const { values: raw } = parseArgs({ args, options, strict: true, allowPositionals: false });
  const values = raw as Record<string, string | boolean | undefined>;
  const text = (name: keyof typeof flags) => String(values[name] ?? "");
  const port = Number(text("metrics-port"));
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`--metrics-port must be a port number, got ${text("metrics-port")}`);
  const systemDomains = text("system-domains")
    .split(",")
    .map((d) => d.trim().toLowerCase())
    .filter(Boolean);
  const leaseSeconds = Number(text("lease-duration-seconds"));
  if (!(leaseSeconds >= 2 && leaseSeconds <= 300))
    throw new Error(`--lease-duration-seconds must be between 2 and 300, got ${text("lease-duration-seconds")}`);
  const sender = text("verification-sender") || `verify@${systemDomains[0] ?? "smtp-connector.invalid"}`;
  if (!/^[^@\s]+@[a-z0-9.-]+$/.test(sender))
    throw new Error(`--verification-sender must be an address such as verify@helpdesk.example, got ${sender}`);
  let smtp: { host: string; port: number } | undefined;
  if (text("verification-smtp")) {
    const match = /^([A-Za-z0-9.-]+|\[[0-9a-fA-F:.]+\]):([0-9]{1,5})$/.exec(text("verification-smtp"));
    if (!match || Number(match[2]) > 65535) throw new Error(`--verification-smtp must be host:port, got ${text("verification-smtp")}`);
    smtp = { host: match[1]!.replace(/^\[|\]$/g, ""), port: Number(match[2]) };
  }
  const dnsResolver = text("dns-resolver");
  if (dnsResolver && !/^([0-9.]+|\[[0-9a-fA-F:]+\])(:[0-9]{1,5})?$/.test(dnsResolver))
    throw new Error(`--dns-resolver must be an IP address with an optional port, such as 10.96.0.10:53, got ${dnsResolver}`);
  const forwarded = {
    trustedArcSealers: parseSealers(text("trusted-arc-sealers")),
    dnsServers: parseDnsServers(text("forwarded-dns-servers")),
  };
  if (!/^https:\/\//.test(text("relay-control-url")))
    throw new Error(`--relay-control-url must be an https URL template (the control API is HTTPS only), got ${text("relay-control-url")}`);
  const endpoints = text("relay-control-endpoints");
  if (endpoints !== "pods" && endpoints !== "url") throw new Error(`--relay-control-endpoints must be pods or url, got ${endpoints}`);
  const ca = /^([a-z0-9-]{1,63})\/([a-z0-9.-]{1,253})$/.exec(text("ca-secret"));
  if (!ca) throw new Error(`--ca-secret must be NAMESPACE/NAME of a Secret, got ${text("ca-secret")}`);
  const duration = (flag: "certificate-duration" | "certificate-renew-before" | "ca-rotation-notice") => {
    try {
      return parseDuration(text(flag));
    } catch {
      throw new Error(`--${flag} must be a duration such as 2160h or 90m, got ${text(flag)}`);
    }
  };
  const certificates = {
    durationMs: duration("certificate-duration"),
    renewBeforeMs: duration("certificate-renew-before"),
    caRotationNoticeMs: duration("ca-rotation-notice"),
  };
  if (certificates.durationMs < 10_000) throw new Error(`--certificate-duration must be at least 10s, got ${text("certificate-duration")}`);
  if (certificates.renewBeforeMs >= certificates.durationMs)
    throw new Error("--certificate-renew-before must be shorter than --certificate-duration");
  // A CA replaced for its age (caRenewBeforeMs ahead of expiry) signs until the notice ends; each certificate
  // it signs then must expire before the CA does.
  if (certificates.caRotationNoticeMs + certificates.durationMs >= caRenewBeforeMs)
    throw new Error(
      `--ca-rotation-notice (${text("ca-rotation-notice")}) and --certificate-duration (${text("certificate-duration")}) together must be shorter than 8760h (a CA is replaced a year before it expires), so no relay certificate outlives the CA that signed it`,
    );
  const limit = (flag: "max-domains-per-namespace" | "max-addresses-per-domain" | "max-addresses-per-namespace") => {
    const n = Number(text(flag));
    if (!Number.isInteger(n) || n < 1 || n > 100_000)
      throw new Error(`--${flag} must be a whole number from 1 to 100000, got ${text(flag)}`);
    return n;
  };
  const maxMessageBytes = quantityInteger(text("relay-max-message-size"));
  if (maxMessageBytes === undefined || maxMessageBytes < 1024 || maxMessageBytes > 1024 ** 3)
    throw new Error(`--relay-max-message-size must be a size from 1Ki to 1Gi such as 50Mi, got ${text("relay-max-message-size")}`);
  const maxRecipients = Number(text("relay-max-recipients"));
  if (!Number.isInteger(maxRecipients) || maxRecipients < 1 || maxRecipients > 1000)
    throw new Error(`--relay-max-recipients must be a whole number from 1 to 1000, got ${text("relay-max-recipients")}`);
  const lease = text("lease-name");
  if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(lease))
    throw new Error(
      `--lease-name must be a Kubernetes object name (lower case letters, digits, '-' and '.'), got ${JSON.stringify(lease)}`,
    );
  const relayHostSuffix = text("relay-host-suffix").toLowerCase().replace(/\.$/, "");
  // It goes into every default host name and into the CA's name constraints.
  if (!/^(?=.{1,200}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(relayHostSuffix)) {
    throw new Error(
      `--relay-host-suffix must be a DNS name such as relay.helpdesk.example.net, got ${JSON.stringify(text("relay-host-suffix"))}`,
    );
  }
  const allowedHostnameSuffixes = parseHostnameSuffixes(text("allowed-hostname-suffixes"));
  const watchNamespaces = text("watch-namespaces")
    .split(",")
    .map((n) => n.trim())
    .filter(Boolean);
  for (const namespace of watchNamespaces) {
    if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(namespace))
      throw new Error(`--watch-namespaces must be namespace names separated by commas, got ${JSON.stringify(namespace)}`);
  }
  return {
    help: values.help === true,
    watchNamespaces: watchNamespaces.length > 0 ? [...new Set(watchNamespaces)] : undefined,
    caSecret: { namespace: ca[1]!, name: ca[2]! },
    certificates,
    dnsResolver,
    forwarded,
    verification: { sender, ...(smtp ? { smtp } : {}), controlUrl: text("relay-control-url"), perPod: endpoints === "pods" },
    kubeconfig: values.kubeconfig === undefined ? undefined : text("kubeconfig"),
    context: values.context === undefined ? undefined : text("context"),
    port,
    relayImage: text("relay-image"),
    relayHostSuffix,
    allowedHostnameSuffixes,
    relayPodTemplate: parseRelayPodTemplate(text("relay-pod-template")),
    relayLimitCaps: { maxMessageBytes, maxRecipients },
    systemDomains,
    limits: {
      domainsPerNamespace: limit("max-domains-per-namespace"),
      addressesPerDomain: limit("max-addresses-per-domain"),
      addressesPerNamespace: limit("max-addresses-per-namespace"),
    },
    leaderElect: values["leader-elect"] === true,
    leaseNamespace: text("leader-election-namespace"),
    leaseName: lease,
    leaseMs: leaseSeconds * 1000,
  };
}

// A lowercase DNS name of at least two labels, as a DKIM/ARC d= is written.
const sealerPattern = /^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** --trusted-arc-sealers: comma-separated domains, lowercased, duplicates dropped. */
export function parseSealers(text: string): string[] {
  const sealers = [
    ...new Set(
      text
        .split(",")
        .map((d) => d.trim().toLowerCase().replace(/\.$/, ""))
        .filter(Boolean),
    ),
  ];
  const bad = sealers.find((d) => !sealerPattern.test(d));
  if (bad !== undefined)
    throw new Error(
      `--trusted-arc-sealers must be comma-separated domains such as microsoft.com,google.com (the d= of a sealer's ARC-Seal), got ${JSON.stringify(bad)}`,
    );
  if (sealers.length > 32) throw new Error(`--trusted-arc-sealers takes at most 32 domains, got ${sealers.length}`);
  return sealers;
}

/** --forwarded-dns-servers: comma-separated IP addresses, each with an optional port ([v6]:port). */
export function parseDnsServers(text: string): string[] {
  const servers = text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  // One definition of a DNS server entry, the relay loader's: the operator never renders what the relay refuses.
  const bad = servers.find((server) => !isDnsServer(server));
  if (bad !== undefined)
    throw new Error(
      `--forwarded-dns-servers must be comma-separated IP addresses with an optional port, such as 10.96.0.10 or 127.0.0.1:5353 or [2001:db8::53]:53, got ${JSON.stringify(bad)}`,
    );
  if (servers.length > 4) throw new Error(`--forwarded-dns-servers takes at most 4 servers, got ${servers.length}`);
  return servers;
}
