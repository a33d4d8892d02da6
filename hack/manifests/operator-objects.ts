// What the operator would create for SmtpDomains, rendered offline for the manifest checkers
// (hack/manifests/check.ts) through the operator's own pure render and plan functions: the relay config,
// Deployment, Services, NetworkPolicy and PodDisruptionBudget (relayObjects, as planDomain applies them) and the
// Secrets it issues (inbound credentials, TLS, submission, control, generated DKIM keys). The installation's
// settings are the operator's flags as the chart passes them (parseFlags over the rendered Deployment's args),
// so a chart value that changes what the operator renders is checked too.
//
// The domains: each SmtpDomain of examples/, with its SupportAddresses there, and two that set every optional
// field between them (a Forwarded one: pod template, PROXY protocol, limits, webhook delivery, a NodePort
// Service, the customer's own TLS Secret; an Authenticated one: LOGIN, two credential versions, an
// authenticated next hop, a ClusterIP Service and one replica, so no PodDisruptionBudget). The domains go into
// the render too, checked against the CRD's schema like the examples.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import type { SmtpDomain, SupportAddress } from "../../crds/schema.js";
import { clientSnippets, type CredentialPlan, type IssuedCredential } from "../../operator/domain/credentials.js";
import { relayObjects, type DkimState } from "../../operator/domain/plan.js";
import {
  controlSecret,
  credentialSecret,
  dkimKeySecret,
  relayHostname,
  relayTlsSecret,
  submissionSecret,
  type KubeObject,
  type OperatorSettings,
  type OutboundInputs,
} from "../../operator/domain/render.js";
import type { OperatorFlags } from "../../operator/flags.js";

const root = join(import.meta.dirname, "..", "..");
// Placeholders: the checkers read the objects' shape, never a key or password.
const pem = (what: string) => `-----BEGIN ${what}-----\nbm90IGEgcmVhbCBrZXk=\n-----END ${what}-----\n`;
const uid = (name: string) => `00000000-0000-4000-8000-${Buffer.from(name).toString("hex").padEnd(12, "0").slice(0, 12)}`;

/** The settings main.ts builds from the operator's flags, as far as they shape what is rendered. */
export function renderSettings(opts: OperatorFlags): OperatorSettings {
  return {
    relayImage: opts.relayImage,
    relayHostSuffix: opts.relayHostSuffix,
    ...(opts.relayPodTemplate ? { relayPodTemplate: opts.relayPodTemplate } : {}),
    relayLimitCaps: opts.relayLimitCaps,
    systemDomains: opts.systemDomains,
    caSecret: opts.caSecret,
    operatorNamespace: opts.leaseNamespace,
    forwarded: opts.forwarded,
  };
}

const meta = (name: string, namespace: string) => ({ name, namespace, uid: uid(name), generation: 1 });

/** Two SmtpDomains that between them set every optional field of the spec. */
export const fullDomains: SmtpDomain[] = [
  {
    apiVersion: "smtpconnector.dev/v1alpha1",
    kind: "SmtpDomain",
    metadata: meta("forwarded-example", "acme-helpdesk"),
    spec: {
      domain: "forwarded.example",
      inbound: {
        mode: "Forwarded",
        allowedSourceRanges: ["203.0.113.0/24", "2001:db8::/32"],
        delivery: {
          webhook: { url: "https://ingest.helpdesk.svc.cluster.local/mail", signingSecretRef: { name: "ingest-signing", key: "hmac" } },
        },
      },
      dkim: {
        keys: [
          { selector: "helpdesk1", algorithm: "Ed25519", recordPublished: true },
          { selector: "own1", algorithm: "RSA2048", privateKeySecretRef: { name: "own-dkim", key: "tls.key" }, recordPublished: true },
        ],
      },
      relay: {
        replicas: 3,
        service: { type: "NodePort", annotations: { "service.beta.kubernetes.io/aws-load-balancer-proxy-protocol": "*" } },
        hostnames: ["mx-relay.helpdesk.example.net"],
        tls: { secretName: "relay-certificate" },
        resources: { requests: { cpu: "250m", memory: "256Mi" }, limits: { cpu: "1", memory: "1Gi" } },
        limits: { maxMessageSize: "50Mi", maxRecipients: 100 },
        proxyProtocol: { trustedRanges: ["10.0.0.0/16", "10.1.2.3"] },
        template: {
          pod: {
            metadata: { labels: { "cost-center": "mail" }, annotations: { "sidecar.istio.io/inject": "false" } },
            imagePullSecrets: [{ name: "registry-internal" }],
            nodeSelector: { "kubernetes.io/os": "linux" },
            tolerations: [
              { key: "dedicated", operator: "Equal", value: "mail", effect: "NoSchedule" },
              { key: "node.kubernetes.io/unreachable", operator: "Exists", effect: "NoExecute", tolerationSeconds: 30 },
            ],
            affinity: {
              nodeAffinity: {
                requiredDuringSchedulingIgnoredDuringExecution: {
                  nodeSelectorTerms: [{ matchExpressions: [{ key: "pool", operator: "In", values: ["mail"] }] }],
                },
                preferredDuringSchedulingIgnoredDuringExecution: [
                  { weight: 50, preference: { matchExpressions: [{ key: "zone-tier", operator: "NotIn", values: ["spot"] }] } },
                ],
              },
              podAntiAffinity: {
                preferredDuringSchedulingIgnoredDuringExecution: [
                  {
                    weight: 100,
                    podAffinityTerm: {
                      topologyKey: "kubernetes.io/hostname",
                      labelSelector: { matchLabels: { "app.kubernetes.io/name": "smtp-connector-relay" } },
                    },
                  },
                ],
              },
            },
            topologySpreadConstraints: [
              {
                maxSkew: 1,
                topologyKey: "topology.kubernetes.io/zone",
                whenUnsatisfiable: "DoNotSchedule",
                minDomains: 2,
                nodeTaintsPolicy: "Honor",
              },
            ],
            priorityClassName: "mail-critical",
            securityContext: { runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001, supplementalGroups: [10002] },
          },
        },
      },
    },
  },
  {
    apiVersion: "smtpconnector.dev/v1alpha1",
    kind: "SmtpDomain",
    metadata: meta("login-example", "acme-helpdesk"),
    spec: {
      domain: "login.example",
      inbound: {
        authProtocol: "LOGIN",
        credentials: [{ version: 1 }, { version: 2 }],
        gracePeriod: "24h",
        allowedSourceRanges: ["198.51.100.7/32"],
        delivery: {
          smtp: {
            host: "ingest.helpdesk.svc.cluster.local",
            port: 587,
            protocol: "SMTP",
            tls: "StartTLS",
            authSecretRef: { name: "ingest-login" },
          },
        },
      },
      relay: { replicas: 1, service: { type: "ClusterIP" } },
    },
  },
];

function documents(file: string): unknown[] {
  return parseAllDocuments(readFileSync(join(root, file), "utf8"))
    .map((d) => d.toJS() as unknown)
    .filter((d) => d !== null);
}

/** examples/*.yaml's SmtpDomains and SupportAddresses. */
function examples(): { domains: SmtpDomain[]; addresses: SupportAddress[] } {
  const objects = readdirSync(join(root, "examples"))
    .filter((f) => f.endsWith(".yaml"))
    .sort()
    .flatMap((f) => documents(join("examples", f))) as { kind?: string }[];
  const domains = (objects.filter((o) => o.kind === "SmtpDomain") as SmtpDomain[]).map((d) => ({
    ...d,
    metadata: { ...d.metadata, uid: uid(d.metadata.name!), generation: 1 },
  }));
  return { domains, addresses: objects.filter((o) => o.kind === "SupportAddress") as SupportAddress[] };
}

/** Every object the operator creates for one domain, as it renders them. */
function domainObjects(domain: SmtpDomain, addresses: readonly SupportAddress[], settings: OperatorSettings): KubeObject[] {
  const forwarded = domain.spec.inbound.mode === "Forwarded";
  const host = relayHostname(domain, settings);
  const ca = pem("CERTIFICATE");
  const versions = forwarded ? [] : (domain.spec.inbound.credentials ?? [{ version: 1 }]).map((c) => c.version);
  const issued = new Map<number, IssuedCredential>(
    versions.map((version) => [
      version,
      {
        version,
        secretName: `${domain.metadata.name}-inbound-v${version}`,
        username: `${domain.metadata.name}-v${version}-placeholder`,
        passwordSha256: "0".repeat(64),
        createdAt: "2026-01-01T00:00:00Z",
        userSupplied: false,
      },
    ]),
  );
  const plan: CredentialPlan[] = versions.map((version) => ({ version, secretName: issued.get(version)!.secretName, state: "Active" }));
  const mine = addresses.filter(
    (a) => a.metadata.namespace === domain.metadata.namespace && a.spec.domainRef.name === domain.metadata.name,
  );
  const generatedKeys = (domain.spec.dkim?.keys ?? []).filter((k) => !k.privateKeySecretRef);
  const outbound: OutboundInputs & { dkimState: DkimState } = {
    submission: { username: `${domain.metadata.name}-submission`, password: "placeholder" },
    controlToken: "placeholder",
    senders: mine.map((a) => ({
      address: a.spec.address,
      ready: true,
      host: a.spec.outbound.host,
      port: a.spec.outbound.port ?? 587,
      tls: a.spec.outbound.tls ?? "StartTLS",
      username: a.spec.address,
      password: "placeholder",
    })),
    dkim: (domain.spec.dkim?.keys ?? [])
      .filter((k) => k.recordPublished)
      .map((k) => ({
        selector: k.selector,
        algorithm: k.algorithm === "Ed25519" ? "ed25519-sha256" : "rsa-sha256",
        pem: pem("PRIVATE KEY"),
      })),
    dkimState: { signing: [], records: [], pending: [] },
  };
  const snapshot = {
    domain,
    credentials: { plan, issued, retired: new Set<number>() },
    addresses: mine.map((a) => a.spec.address.toLowerCase()),
    outbound,
    ...(domain.spec.inbound.delivery.smtp?.authSecretRef ? { nextHopUsername: "ingest" } : {}),
  };
  return [
    ...versions.map((v) =>
      credentialSecret(
        domain,
        v,
        { username: issued.get(v)!.username, password: "placeholder" },
        clientSnippets(domain.spec.domain, host, issued.get(v)!.username, "placeholder", ca),
      ),
    ),
    // The customer's own TLS Secret (spec.relay.tls.secretName) is theirs, not rendered.
    ...(domain.spec.relay?.tls?.secretName
      ? []
      : [relayTlsSecret(domain, { certPem: pem("CERTIFICATE"), keyPem: pem("PRIVATE KEY") }, ca)]),
    submissionSecret(domain, outbound.submission),
    controlSecret(domain, outbound.controlToken),
    ...generatedKeys.map((k) => dkimKeySecret(domain, k.selector, pem("PRIVATE KEY"))),
    ...relayObjects(snapshot, settings),
  ];
}

/** The operator's objects for the examples' domains and the full ones, and those domains themselves. */
export function operatorObjects(settings: OperatorSettings): { domains: SmtpDomain[]; objects: KubeObject[] } {
  const { domains, addresses } = examples();
  const all = [...domains, ...fullDomains];
  const objects = all.flatMap((d) => domainObjects(d, addresses, settings));
  // Names must be unique per kind and namespace, as on a cluster: two domains' objects may not collide.
  const seen = new Set<string>();
  for (const o of objects) {
    const key = `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`;
    if (seen.has(key)) throw new Error(`operator-objects: two domains render ${key}`);
    seen.add(key);
  }
  return { domains: fullDomains, objects };
}
