// The objects an SmtpDomain becomes, computed from its spec and what was
// read: the relay config (the contract with the relay, digests only), the
// relay Deployment, Service, NetworkPolicy and PodDisruptionBudget. Pure.
import { createHash } from "node:crypto";
import { stringify } from "yaml";
import type { RelayPodTemplate, SmtpDomain } from "../../crds/schema.js";
import { configVersion, recommendedAuthFailures, recommendedLimits, type RelayConfig } from "../../relay/contract/config.js";
import type { CertificatePolicy, KeyPair } from "../tls/certificates.js";
import { controlTokenDigest, passwordDigest } from "../../relay/contract/digests.js";
import { configPath, relayCommand, relayMounts, relayPorts, tmpSizeLimit } from "../../relay/contract/pod.js";
import { defaultHostname } from "./hostname-claims.js";
import {
  credentialSecretName,
  credentialVersionOfName,
  inboundMode,
  revokedAtAnnotation,
  type CredentialPlan,
  type IssuedCredential,
} from "./credentials.js";
import { quantityInteger } from "../kube/quantity.js";
import { relayPodParts } from "./pod-template.js";

export const fieldManager = "smtp-connector";
export const managedByLabel = { "app.kubernetes.io/managed-by": "smtp-connector" };

export interface OperatorSettings {
  relayImage: string;
  /** Suffix of the relay host names: <domain-name>.<namespace>.<suffix>. */
  relayHostSuffix: string;
  /** DNS suffixes spec.relay.hostnames may lie under (--allowed-hostname-suffixes); none: only the default relay host name. */
  allowedHostnameSuffixes?: readonly string[];
  /** The helpdesk's own domains: never connected, never sent through a customer's server. */
  systemDomains?: readonly string[];
  /** DNS server ("host:port") the DKIM check asks for TXT records; without it records are confirmed only by spec. */
  dnsResolver?: string;
  /** How often pending DKIM records are looked up again. */
  dnsCheckIntervalMs?: number;
  /** Lifetime and renewal of operator-issued relay certificates (defaults: 90 days, renewed 30 days ahead). */
  certificates?: CertificatePolicy;
  /** The operator's own namespace: the only one that may reach a relay's control API. */
  operatorNamespace?: string;
  /** Where the installation's CA is kept (default smtp-connector-system/smtp-connector-ca). */
  caSecret?: { namespace: string; name: string };
  /** The installation's maximums of a domain's message limits (--relay-max-message-size, --relay-max-recipients). */
  relayLimitCaps?: { maxMessageBytes: number; maxRecipients: number };
  /** The installation's relay pod template (--relay-pod-template): under each domain's spec.relay.template.pod. */
  relayPodTemplate?: RelayPodTemplate;
  /** Forwarded-mode checks, installation-wide (--trusted-arc-sealers, --forwarded-dns-servers); defaults below. */
  forwarded?: ForwardedSettings;
}

export interface ForwardedSettings {
  /** ARC sealers (d= of the latest ARC-Seal) whose chain the relay counts; lowercase domains. */
  trustedArcSealers: readonly string[];
  /** DNS servers ("IP" or "IP:port") for SPF, DKIM, DMARC and ARC lookups; the system resolver when empty. */
  dnsServers: readonly string[];
}

/**
 * The sealers of the two cloud services forwarded mode is for: Microsoft 365 seals with d=microsoft.com,
 * Google (Workspace and Gmail) with d=google.com. An installation that serves neither sets the flag empty.
 */
export const defaultTrustedArcSealers = ["microsoft.com", "google.com"] as const;

/**
 * The customer-facing Service's ports: what customers' servers connect to (targetPort: the relay's listeners,
 * relayPorts). Authenticated mode offers 587 and 465; Forwarded mode only 25, where a mail service forwards as
 * MTAs deliver.
 */
export const publicPorts = { starttls: 587, implicitTls: 465, forwarded: 25 } as const;

/** The port status.relay.endpoint names: where the customer's server (or mail service) connects. */
export function endpointPort(domain: SmtpDomain): number {
  return inboundMode(domain) === "Forwarded" ? publicPorts.forwarded : publicPorts.starttls;
}

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller: boolean; blockOwnerDeletion: boolean }[];
    /** Only as a precondition of a write (Cluster.applyIfUnchanged). */
    resourceVersion?: string;
  };
  [key: string]: unknown;
}

export function names(domain: SmtpDomain) {
  const base = domain.metadata.name!;
  return {
    relay: `${base}-relay`,
    config: `${base}-relay-config`,
    tls: domain.spec.relay?.tls?.secretName ?? issuedTlsName(domain),
    /** The cluster-internal Service: the helpdesk's submission port and the operator's control port. */
    internal: `${base}-relay-internal`,
    /** The helpdesk's submission credential for this domain, with where to submit. */
    submission: `${base}-submission`,
    /** The bearer token the operator presents to this domain's relay. */
    control: `${base}-relay-control`,
  };
}

/** The name of the relay certificate's Secret when the operator issues it (no spec.relay.tls.secretName). */
const issuedTlsName = (domain: SmtpDomain) => `${domain.metadata.name!}-relay-tls`;

/**
 * Whether `name` is one the operator gives a Secret of this domain that a reconcile reads back whole: the
 * relay config, the certificate it issues, a credential version (credentialSecretName). The read cache holds
 * only these (operator/kube/read-cache.ts); a tenant's Secret named in the spec never passes.
 */
export function isOwnSecretName(domain: SmtpDomain, name: string): boolean {
  return name === names(domain).config || name === issuedTlsName(domain) || credentialVersionOfName(domain, name) !== undefined;
}

export function labels(domain: SmtpDomain): Record<string, string> {
  return {
    ...managedByLabel,
    "app.kubernetes.io/name": "smtp-connector-relay",
    "app.kubernetes.io/instance": domain.metadata.name!,
    "smtpconnector.dev/domain": domain.metadata.name!,
  };
}

function meta(domain: SmtpDomain, name: string): KubeObject["metadata"] {
  return {
    name,
    namespace: domain.metadata.namespace!,
    labels: labels(domain),
    ownerReferences: [
      {
        apiVersion: "smtpconnector.dev/v1alpha1",
        kind: "SmtpDomain",
        name: domain.metadata.name!,
        uid: domain.metadata.uid!,
        controller: true,
        blockOwnerDeletion: true,
      },
    ],
  };
}

/**
 * The name the relay announces and the customer's server is told to connect to: the first host name this domain
 * holds (`withheld`: the listed names another domain holds, see hostname-claims.ts), so that its certificate covers it.
 */
export function relayHostname(domain: SmtpDomain, settings: OperatorSettings, withheld: ReadonlySet<string> = noneWithheld): string {
  return customerHostnames(domain, settings, withheld)[0]!;
}

/** The relay host name the installation gives a domain that declares none: <name>.<namespace>.<--relay-host-suffix>. */
export function defaultRelayHostname(domain: SmtpDomain, settings: OperatorSettings): string {
  return defaultHostname(domain, settings.relayHostSuffix);
}

const noneWithheld: ReadonlySet<string> = new Set();

/** The host names the customer's server connects to: the declared ones the domain holds or, if none, the default relay host name. */
export function customerHostnames(domain: SmtpDomain, settings: OperatorSettings, withheld: ReadonlySet<string> = noneWithheld): string[] {
  const held = (domain.spec.relay?.hostnames ?? []).filter((name) => !withheld.has(name.toLowerCase()));
  return held.length > 0 ? held : [defaultHostname(domain, settings.relayHostSuffix)];
}

/** Every name an operator-issued relay certificate covers: the customer's host names and both Services' cluster names. */
export function certificateNames(domain: SmtpDomain, settings: OperatorSettings, withheld: ReadonlySet<string> = noneWithheld): string[] {
  const n = names(domain);
  const namespace = domain.metadata.namespace!;
  const cluster = [n.relay, n.internal].flatMap((service) => [`${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`]);
  return [...new Set([...customerHostnames(domain, settings, withheld), ...cluster])];
}

/** The operator-issued relay certificate, with the CA that signed it (ca.crt, as cert-manager writes it). */
export function relayTlsSecret(domain: SmtpDomain, pair: KeyPair, caPem: string): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: meta(domain, names(domain).tls),
    type: "kubernetes.io/tls",
    stringData: { "tls.crt": pair.certPem, "tls.key": pair.keyPem, "ca.crt": caPem },
  };
}

/** The relay config for this domain: only digests of the inbound passwords. */
export function relayConfig(
  domain: SmtpDomain,
  plan: readonly CredentialPlan[],
  issued: ReadonlyMap<number, IssuedCredential>,
  addresses: readonly string[],
  settings: OperatorSettings,
  nextHopUsername?: string,
  outbound?: OutboundInputs,
  withheld?: ReadonlySet<string>,
): RelayConfig {
  const delivery = domain.spec.inbound.delivery;
  const smtp = delivery.smtp;
  const forwarded = inboundMode(domain) === "Forwarded";
  const forwardedSettings = settings.forwarded ?? { trustedArcSealers: defaultTrustedArcSealers, dnsServers: [] };
  return {
    version: configVersion,
    hostname: relayHostname(domain, settings, withheld),
    listeners: {
      // Forwarded: no AUTH listener at all, only the unauthenticated one a mail service forwards to.
      ...(forwarded
        ? { forwarded: { port: relayPorts.forwarded } }
        : { starttls: { port: relayPorts.starttls }, implicitTls: { port: relayPorts.implicitTls } }),
      health: { port: relayPorts.health },
      ...(outbound
        ? {
            submission: { port: relayPorts.submission },
            control: { port: relayPorts.control, tokenSha256: controlTokenDigest(outbound.controlToken) },
          }
        : {}),
    },
    // Paths relative to the config file's directory (the relay resolves them),
    // so the config works wherever the Secrets are mounted.
    tls: { certFile: configPath("tls", "tls.crt"), keyFile: configPath("tls", "tls.key") },
    limits: { ...recommendedLimits, ...messageLimits(domain, settings) },
    authFailures: recommendedAuthFailures,
    ...(domain.spec.relay?.proxyProtocol
      ? { proxyProtocol: proxyProtocolConfig(domain.spec.relay.proxyProtocol.trustedRanges, domain.spec.inbound.allowedSourceRanges) }
      : {}),
    ...(outbound ? { outbound: { systemDomains: [...(settings.systemDomains ?? [])], unconnectedSenders: "Refuse" as const } } : {}),
    ...(forwarded
      ? {
          forwarded: {
            trustedArcSealers: [...forwardedSettings.trustedArcSealers],
            ...(forwardedSettings.dnsServers.length > 0 ? { dnsServers: [...forwardedSettings.dnsServers] } : {}),
          },
        }
      : {}),
    domains: [
      {
        domain: domain.spec.domain,
        // Written only when Forwarded: an Authenticated domain's config stays what it was before modes existed.
        ...(forwarded ? { mode: "Forwarded" as const } : {}),
        authProtocol: domain.spec.inbound.authProtocol ?? "PLAIN",
        // Expired versions are written as revoked: the relay refuses them either way. A Forwarded
        // domain has none at all (the relay's loader refuses one with credentials): the versions
        // revoked by the switch are refused because the relay has no AUTH listener and no entry for them.
        credentials: forwarded
          ? []
          : plan.flatMap((p) => {
              const credential = issued.get(p.version);
              if (!credential) return [];
              return [
                {
                  version: p.version,
                  username: credential.username,
                  passwordSha256: credential.passwordSha256,
                  state: p.state === "Active" ? ("Active" as const) : ("Revoked" as const),
                  ...(p.expiresAt ? { expiresAt: p.expiresAt } : {}),
                },
              ];
            }),
        addresses: [...addresses].sort(),
        delivery: smtp
          ? {
              smtp: {
                host: smtp.host,
                port: smtp.port ?? 25,
                protocol: smtp.protocol ?? "SMTP",
                tls: smtp.tls ?? "StartTLS",
                ...(smtp.authSecretRef && nextHopUsername
                  ? { username: nextHopUsername, passwordFile: configPath("nextHop", "password") }
                  : {}),
              },
            }
          : {
              webhook: { url: delivery.webhook!.url, hmacKeyFile: configPath("webhook", delivery.webhook!.signingSecretRef.key ?? "key") },
            },
        ...(outbound
          ? {
              outbound: {
                submission: [
                  {
                    version: 1,
                    username: outbound.submission.username,
                    passwordSha256: passwordDigest(outbound.submission.password),
                    state: "Active" as const,
                  },
                ],
                dkim: outbound.dkim.map((k) => ({ selector: k.selector, algorithm: k.algorithm, keyFile: dkimFile(k.selector) })),
                senders: [...outbound.senders]
                  .sort((a, b) => a.address.localeCompare(b.address))
                  .map((s) => ({
                    address: s.address,
                    ready: s.ready,
                    server: {
                      host: s.host,
                      port: s.port,
                      tls: s.tls,
                      username: s.username,
                      // Files next to relay.yaml, in the same Secret: config and files change together.
                      passwordFile: senderFile(s.address, "password"),
                      ...(s.ca !== undefined ? { caFile: senderFile(s.address, "ca.crt") } : {}),
                    },
                  })),
              },
            }
          : {}),
      },
    ],
  };
}

/** The domain's message limits (spec.relay.limits, or the recommended ones), each at most the installation's maximum. */
export function messageLimits(domain: SmtpDomain, settings: OperatorSettings): { maxMessageBytes: number; maxRecipients: number } {
  const wanted = domain.spec.relay?.limits;
  const caps = settings.relayLimitCaps ?? {
    maxMessageBytes: recommendedLimits.maxMessageBytes,
    maxRecipients: recommendedLimits.maxRecipients,
  };
  const size = wanted?.maxMessageSize !== undefined ? quantityInteger(wanted.maxMessageSize) : undefined;
  return {
    maxMessageBytes: Math.min(size ?? recommendedLimits.maxMessageBytes, caps.maxMessageBytes),
    maxRecipients: Math.min(wanted?.maxRecipients ?? recommendedLimits.maxRecipients, caps.maxRecipients),
  };
}

/** What outbound needs beyond the SmtpDomain: read by the reconciler from Secrets and addresses. */
export interface OutboundInputs {
  submission: { username: string; password: string };
  controlToken: string;
  senders: readonly OutboundSender[];
  /** The keys the relay signs with now (confirmed records only). */
  dkim: readonly { selector: string; algorithm: "rsa-sha256" | "ed25519-sha256"; pem: string }[];
}

/** The key (and file name) of a DKIM private key in the relay config Secret. */
export function dkimFile(selector: string): string {
  return `dkim-${selector}.key`;
}

export interface OutboundSender {
  address: string;
  ready: boolean;
  host: string;
  port: number;
  tls: "StartTLS" | "Implicit";
  username: string;
  password: string;
  ca?: string;
}

/** The key (and file name) of a sender's password or CA in the relay config Secret. */
export function senderFile(address: string, kind: "password" | "ca.crt"): string {
  return `sender-${createHash("sha256").update(address).digest("hex").slice(0, 16)}.${kind}`;
}

/** The files that travel with the config in its Secret: each sender's password and CA. */
export function relayConfigFiles(outbound: OutboundInputs | undefined): Record<string, string> {
  const files: Record<string, string> = {};
  for (const s of outbound?.senders ?? []) {
    files[senderFile(s.address, "password")] = s.password;
    if (s.ca !== undefined) files[senderFile(s.address, "ca.crt")] = s.ca;
  }
  for (const k of outbound?.dkim ?? []) files[dkimFile(k.selector)] = k.pem;
  return files;
}

/** An operator-generated DKIM key's Secret: kept for as long as the key is listed, never regenerated. */
export function dkimKeySecret(domain: SmtpDomain, selector: string, pem: string): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: {
      ...meta(domain, `${domain.metadata.name}-dkim-${selector}`),
      labels: { ...labels(domain), "smtpconnector.dev/dkim-selector": selector },
    },
    type: "Opaque",
    stringData: { "private.pem": pem },
  };
}

export function relayConfigSecret(domain: SmtpDomain, config: RelayConfig, files: Record<string, string> = {}): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: meta(domain, names(domain).config),
    type: "Opaque",
    stringData: { "relay.yaml": stringify(config), ...files },
  };
}

/** The helpdesk's submission credential for this domain, and where to submit. */
export function submissionSecret(domain: SmtpDomain, credential: { username: string; password: string }): KubeObject {
  const n = names(domain);
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: meta(domain, n.submission),
    type: "Opaque",
    stringData: {
      username: credential.username,
      password: credential.password,
      host: `${n.internal}.${domain.metadata.namespace}.svc`,
      port: String(relayPorts.submission),
      tls: "StartTLS",
    },
  };
}

export function controlSecret(domain: SmtpDomain, token: string): KubeObject {
  return { apiVersion: "v1", kind: "Secret", metadata: meta(domain, names(domain).control), type: "Opaque", stringData: { token } };
}

/** The cluster-internal Service: outbound submission for the helpdesk, the control API for the operator. Never customer-facing. */
export function relayInternalService(domain: SmtpDomain): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: meta(domain, names(domain).internal),
    spec: {
      type: "ClusterIP",
      selector: { "app.kubernetes.io/name": "smtp-connector-relay", "app.kubernetes.io/instance": domain.metadata.name! },
      ports: [
        { name: "submission", port: relayPorts.submission, targetPort: "internal-smtp", protocol: "TCP" },
        { name: "control", port: relayPorts.control, targetPort: "control", protocol: "TCP" },
      ],
    },
  };
}

export function credentialSecret(
  domain: SmtpDomain,
  version: number,
  credential: { username: string; password: string },
  snippets: Record<string, string>,
  revokedAt?: string,
): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: {
      ...meta(domain, credentialSecretName(domain, version)),
      labels: { ...labels(domain), "smtpconnector.dev/credential-version": String(version) },
      ...(revokedAt ? { annotations: { [revokedAtAnnotation]: revokedAt } } : {}),
    },
    type: "Opaque",
    stringData: { username: credential.username, password: credential.password, ...snippets },
  };
}

/**
 * The relay Deployment. Config, credential and certificate changes reach the
 * pods through their mounted Secrets and are hot-reloaded, so nothing here
 * changes with them: rotating a credential never restarts a pod.
 */
export function relayDeployment(domain: SmtpDomain, settings: OperatorSettings): KubeObject {
  const n = names(domain);
  const replicas = domain.spec.relay?.replicas ?? 2;
  const selector = { "app.kubernetes.io/name": "smtp-connector-relay", "app.kubernetes.io/instance": domain.metadata.name! };
  const smtp = domain.spec.inbound.delivery.smtp;
  const webhook = domain.spec.inbound.delivery.webhook;
  const volumes: Record<string, unknown>[] = [
    { name: "config", secret: { secretName: n.config } },
    { name: "tls", secret: { secretName: n.tls } },
    // Sized for the DKIM spool's budget, which the relay enforces below it: a full /tmp would get the pod evicted.
    { name: "tmp", emptyDir: { sizeLimit: tmpSizeLimit(messageLimits(domain, settings).maxMessageBytes) } },
  ];
  const mounts: Record<string, unknown>[] = [
    { name: "config", mountPath: relayMounts.config, readOnly: true },
    { name: "tls", mountPath: relayMounts.tls, readOnly: true },
    { name: "tmp", mountPath: relayMounts.tmp },
  ];
  if (smtp?.authSecretRef) {
    volumes.push({ name: "next-hop", secret: { secretName: smtp.authSecretRef.name } });
    mounts.push({ name: "next-hop", mountPath: relayMounts.nextHop, readOnly: true });
  }
  if (webhook) {
    volumes.push({ name: "webhook", secret: { secretName: webhook.signingSecretRef.name } });
    mounts.push({ name: "webhook", mountPath: relayMounts.webhook, readOnly: true });
  }
  const pod = relayPodParts(domain.spec.relay?.template?.pod, settings.relayPodTemplate, { labels: labels(domain), selector });
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: meta(domain, n.relay),
    spec: {
      replicas,
      selector: { matchLabels: selector },
      strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: {
        metadata: { labels: pod.labels, ...(pod.annotations ? { annotations: pod.annotations } : {}) },
        spec: {
          // The relay needs no Kubernetes API access.
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          terminationGracePeriodSeconds: 60,
          // The restricted security context, spread constraints and the template's scheduling fields.
          ...pod.spec,
          containers: [
            {
              name: "relay",
              image: settings.relayImage,
              command: relayCommand(),
              env: [{ name: "LOG_LEVEL", value: "info" }],
              ports: [
                ...customerListeners(domain).map(({ name, containerPort }) => ({ name, containerPort })),
                { name: "health", containerPort: relayPorts.health },
                { name: "internal-smtp", containerPort: relayPorts.submission },
                { name: "control", containerPort: relayPorts.control },
              ],
              readinessProbe: { httpGet: { path: "/readyz", port: "health" }, periodSeconds: 5 },
              livenessProbe: { httpGet: { path: "/healthz", port: "health" }, periodSeconds: 10, failureThreshold: 6 },
              resources: relayResources(domain),
              securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } },
              volumeMounts: mounts,
            },
          ],
          volumes,
        },
      },
    },
  };
}

/** The relay's defaults, for a domain of modest traffic; spec.relay.resources replaces them as a whole. */
const defaultRelayResources = { requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "512Mi" } };

function relayResources(domain: SmtpDomain): Record<string, Record<string, string>> {
  const wanted = domain.spec.relay?.resources;
  if (!wanted) return defaultRelayResources;
  // Quantities go out as strings, as the API server returns them (an integer 2 reads back as "2").
  const list = (resources: { cpu?: string | number; memory?: string | number } | undefined) =>
    Object.fromEntries(Object.entries(resources ?? {}).map(([name, quantity]) => [name, String(quantity)]));
  return { ...(wanted.requests ? { requests: list(wanted.requests) } : {}), ...(wanted.limits ? { limits: list(wanted.limits) } : {}) };
}

/**
 * The customer-facing listeners of the mode: the container port (named, so the Service's targetPort and the
 * NetworkPolicy follow it) and the Service port in front of it. One list, so the Deployment, Service and
 * NetworkPolicy never disagree on what a mode exposes.
 */
export function customerListeners(domain: SmtpDomain): { name: string; containerPort: number; port: number }[] {
  if (inboundMode(domain) === "Forwarded") return [{ name: "smtp", containerPort: relayPorts.forwarded, port: publicPorts.forwarded }];
  return [
    { name: "submission", containerPort: relayPorts.starttls, port: publicPorts.starttls },
    { name: "submissions", containerPort: relayPorts.implicitTls, port: publicPorts.implicitTls },
  ];
}

/**
 * Behind a PROXY-protocol balancer the NetworkPolicy sees the balancer's address, and a Service that is not a
 * LoadBalancer has no loadBalancerSourceRanges: the relay itself checks the client the header names against
 * allowedSourceRanges.
 */
function proxyProtocolConfig(
  trustedRanges: readonly string[],
  allowedSourceRanges: readonly string[] | undefined,
): NonNullable<RelayConfig["proxyProtocol"]> {
  return { trustedRanges: [...trustedRanges], ...(allowedSourceRanges?.length ? { allowedClients: [...allowedSourceRanges] } : {}) };
}

export function relayService(domain: SmtpDomain): KubeObject {
  const service = domain.spec.relay?.service;
  const type = service?.type ?? "LoadBalancer";
  const ranges = domain.spec.inbound.allowedSourceRanges;
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: { ...meta(domain, names(domain).relay), ...(service?.annotations ? { annotations: service.annotations } : {}) },
    spec: {
      type,
      selector: { "app.kubernetes.io/name": "smtp-connector-relay", "app.kubernetes.io/instance": domain.metadata.name! },
      // Only the customer-facing ports: the health port stays inside the cluster.
      ports: customerListeners(domain).map(({ name, port }) => ({ name, port, targetPort: name, protocol: "TCP" })),
      ...(type === "LoadBalancer" && ranges?.length ? { loadBalancerSourceRanges: ranges } : {}),
      ...(type !== "ClusterIP" ? { externalTrafficPolicy: "Local" } : {}),
    },
  };
}

export function relayNetworkPolicy(domain: SmtpDomain, settings: OperatorSettings): KubeObject {
  const allowed = domain.spec.inbound.allowedSourceRanges ?? [];
  // Behind a PROXY-protocol balancer the pods see the balancer's address: it must get through too.
  const balancers =
    allowed.length > 0
      ? (domain.spec.relay?.proxyProtocol?.trustedRanges ?? []).map((r) => (r.includes("/") ? r : `${r}/${r.includes(":") ? 128 : 32}`))
      : [];
  const ranges = [...new Set([...allowed, ...balancers])];
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: meta(domain, names(domain).relay),
    spec: {
      podSelector: {
        matchLabels: { "app.kubernetes.io/name": "smtp-connector-relay", "app.kubernetes.io/instance": domain.metadata.name! },
      },
      policyTypes: ["Ingress"],
      // A NetworkPolicy's ports are the pod's (after the Service's mapping): the listeners, not 587/465.
      ingress: [
        {
          ...(ranges?.length ? { from: ranges.map((cidr) => ({ ipBlock: { cidr } })) } : {}),
          ports: customerListeners(domain).map(({ containerPort }) => ({ protocol: "TCP", port: containerPort })),
        },
        // Probes, metrics and the helpdesk's submission: from inside the cluster only.
        {
          from: [{ namespaceSelector: {} }],
          ports: [
            { protocol: "TCP", port: relayPorts.health },
            { protocol: "TCP", port: relayPorts.submission },
          ],
        },
        // The control API: from the operator's namespace only.
        {
          from: [
            {
              namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": settings.operatorNamespace ?? "smtp-connector-system" } },
            },
          ],
          ports: [{ protocol: "TCP", port: relayPorts.control }],
        },
      ],
    },
  };
}

export function relayDisruptionBudget(domain: SmtpDomain): KubeObject | undefined {
  if ((domain.spec.relay?.replicas ?? 2) < 2) return undefined;
  return {
    apiVersion: "policy/v1",
    kind: "PodDisruptionBudget",
    metadata: meta(domain, names(domain).relay),
    spec: {
      maxUnavailable: 1,
      selector: { matchLabels: { "app.kubernetes.io/name": "smtp-connector-relay", "app.kubernetes.io/instance": domain.metadata.name! } },
    },
  };
}
