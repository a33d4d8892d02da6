// What one SmtpDomain should become, decided from a snapshot of what was read:
// the objects to apply, the Events to record and the status to write. Pure:
// reconcile.ts gathers what is, snapshot.ts makes the snapshot of it (or says
// what to issue first), reconcile.ts applies the plan; every rule here is
// unit-tested with plain objects (test/unit/domain-plan.test.ts).
import type { SmtpDomain, SmtpDomainStatus } from "../../crds/schema.js";
import type { Verdict } from "../address/rules.js";
import { mergeConditions, rfc3339, type DesiredCondition } from "../conditions.js";
import { ownedBy } from "../kube/cluster.js";
import { alreadyApplied } from "../kube/compare.js";
import { quantityInteger } from "../kube/quantity.js";
import type { CertificateState } from "./certificate.js";
import { inboundMode, type CredentialPlan, type InboundMode, type IssuedCredential } from "./credentials.js";
import { conflictMessage, withheldHostnames, type HostnameConflict } from "./hostname-claims.js";
import type { Problem } from "./inbound-credentials.js";
import {
  endpointPort,
  messageLimits,
  names,
  relayConfig,
  relayConfigFiles,
  relayConfigSecret,
  relayDeployment,
  relayDisruptionBudget,
  relayHostname,
  relayInternalService,
  relayNetworkPolicy,
  relayService,
  type KubeObject,
  type OperatorSettings,
  type OutboundInputs,
} from "./render.js";

/** How often last use is collected from a running relay. */
export const lastUseIntervalMs = 30_000;

export interface DkimState {
  signing: OutboundInputs["dkim"];
  records: NonNullable<NonNullable<SmtpDomainStatus["dkim"]>["records"]>;
  pending: string[];
  /** The DKIMRecordPublished condition, when the domain has keys. */
  condition?: DesiredCondition;
}

export interface CredentialsState {
  plan: readonly CredentialPlan[];
  issued: ReadonlyMap<number, IssuedCredential>;
  retired: ReadonlySet<number>;
}

/** What the planner decides from for one served SmtpDomain, made from what was read (snapshot.ts). */
export interface DomainSnapshot {
  domain: SmtpDomain;
  /** The served support addresses of this domain, lowercase. */
  addresses: readonly string[];
  /** How many SupportAddresses name this domain but are not served (their DomainReady says why). */
  addressesNotServed?: number;
  certificate: CertificateState;
  /** Names in spec.relay.hostnames another SmtpDomain holds (hostname-claims.ts); the certificate leaves them out. */
  hostnameConflicts?: readonly HostnameConflict[];
  credentials: CredentialsState;
  /** What the gathering found wrong, in the order found (the first is Stalled's). */
  problems: readonly Problem[];
  /** The next hop's AUTH username (no secret: it goes into the config). */
  nextHopUsername?: string;
  /** Outbound inputs; absent when the submission or control Secret is someone else's. */
  outbound?: OutboundInputs & { dkimState: DkimState };
  /** The relay objects as they are now, by `${kind}/${name}`; a missing key is an object that does not exist. */
  existing: ReadonlyMap<string, Record<string, unknown>>;
  /** Available replicas of the relay Deployment. */
  available: number;
  /** Whether the relay Deployment has rolled out its latest template (every replica runs it). */
  rolledOut?: boolean;
  /** Last use per credential version, as the relay reports it. */
  reportedUse: ReadonlyMap<number, string>;
  /** Whether the relay is asked for last use (a verification client is configured). */
  pollsLastUse: boolean;
}

export interface PlannedEvent {
  type: "Normal" | "Warning";
  reason: string;
  message: string;
}

export interface DomainPlan {
  /** Objects to apply: missing, or different from what is rendered. */
  apply: KubeObject[];
  /** Events about the objects (drift repaired). Condition changes are told by the apply step from the status. */
  events: PlannedEvent[];
  status: SmtpDomainStatus;
  requeueAfterMs?: number;
}

export const objectKey = (object: { kind: string; metadata: { name: string } }) => `${object.kind}/${object.metadata.name}`;

/** The relay objects of a domain, as rendered: config (digests only), Deployment, Services, NetworkPolicy, PDB. */
export function relayObjects(
  snapshot: Pick<DomainSnapshot, "domain" | "credentials" | "addresses" | "nextHopUsername" | "outbound" | "hostnameConflicts">,
  settings: OperatorSettings,
): KubeObject[] {
  const { domain, credentials, outbound } = snapshot;
  return [
    relayConfigSecret(
      domain,
      relayConfig(
        domain,
        credentials.plan,
        credentials.issued,
        snapshot.addresses,
        settings,
        snapshot.nextHopUsername,
        outbound,
        withheldHostnames(snapshot.hostnameConflicts),
      ),
      relayConfigFiles(outbound),
    ),
    relayDeployment(domain, settings),
    relayService(domain),
    relayInternalService(domain),
    relayNetworkPolicy(domain, settings),
    relayDisruptionBudget(domain),
  ].filter((o): o is KubeObject => o !== undefined);
}

/** The relay objects a domain has, by kind and name (rendered with nothing issued: only which objects there are is used). */
export function relayObjectRefs(domain: SmtpDomain, settings: OperatorSettings): KubeObject[] {
  return relayObjects({ domain, credentials: { plan: [], issued: new Map(), retired: new Set() }, addresses: [] }, settings);
}

/** A domain the rules do not serve (another account claimed it first, or over a limit): no credentials, no relay. */
export function planNotServed(domain: SmtpDomain, verdict: Extract<Verdict, { served: false }>, now: Date): SmtpDomainStatus {
  const { reason, message } = verdict;
  const generation = domain.metadata.generation ?? 0;
  return {
    observedGeneration: generation,
    conditions: mergeConditions(
      domain.status?.conditions,
      [
        { type: "Ready", status: "False", reason, message },
        { type: "Stalled", status: "True", reason, message },
      ],
      generation,
      now,
    ),
    // What was issued and what was revoked stay on record while the domain is not served.
    ...(domain.status?.credentials ? { credentials: domain.status.credentials } : {}),
    ...(domain.status?.revokedVersions ? { revokedVersions: domain.status.revokedVersions } : {}),
  };
}

/** The plan for a served domain. */
export function planDomain(snapshot: DomainSnapshot, settings: OperatorSettings, now: Date): DomainPlan {
  const { domain } = snapshot;
  const uid = domain.metadata.uid!;
  const problems = [...snapshot.problems];
  let certificate = snapshot.certificate;
  if (snapshot.hostnameConflicts && snapshot.hostnameConflicts.length > 0) {
    // Said before whatever else is wrong with the certificate: only the domain's author can change it.
    const conflict: Problem = {
      condition: "CertificateReady",
      reason: "HostnameConflict",
      message: conflictMessage(domain, snapshot.hostnameConflicts),
    };
    problems.unshift(conflict);
    certificate = {
      ...certificate,
      condition: { type: "CertificateReady", status: "False", reason: conflict.reason, message: conflict.message },
    };
  }
  const apply: KubeObject[] = [];
  const events: PlannedEvent[] = [];
  // With the spec unchanged since everything was last applied, a missing or different object is drift
  // (deleted or edited by hand), not a change of ours: repaired, and said. The relay config also
  // changes with addresses and Secrets, so only its deletion counts.
  const settled = domain.status?.relay !== undefined && domain.status.observedGeneration === domain.metadata.generation;
  for (const object of relayObjects(snapshot, settings)) {
    const existing = snapshot.existing.get(objectKey(object));
    if (existing && !ownedBy(existing, uid)) {
      problems.push({
        condition: "RelayAvailable",
        // A reason means one thing: a Secret in the way is SecretConflict, any other object ObjectConflict.
        reason: object.kind === "Secret" ? "SecretConflict" : "ObjectConflict",
        message: `${object.kind} ${object.metadata.name} exists and is not owned by this SmtpDomain; the operator never overwrites it`,
      });
      continue;
    }
    if (existing && alreadyApplied(object, existing)) continue;
    apply.push(object);
    if (settled && (!existing || object.metadata.name !== names(domain).config)) {
      const what = existing ? "differed from what the operator renders (edited by hand?)" : "was deleted";
      events.push({
        type: "Warning",
        reason: "DriftRepaired",
        message: `${object.kind} ${object.metadata.name} ${what}: restored. The objects a domain owns are the operator's; change the SmtpDomain instead`,
      });
    }
  }
  const status = domainStatus({
    domain,
    credentials: snapshot.credentials,
    problems,
    available: snapshot.available,
    addressCount: snapshot.addresses.length,
    ...(snapshot.addressesNotServed !== undefined ? { addressesNotServed: snapshot.addressesNotServed } : {}),
    settings,
    now,
    reportedUse: snapshot.reportedUse,
    ...(snapshot.outbound ? { dkim: snapshot.outbound.dkimState } : {}),
    certificate,
    withheld: withheldHostnames(snapshot.hostnameConflicts),
    // The Deployment as read rolled out, and nothing of it is about to change (a mode switch changes its template).
    rolledOut: (snapshot.rolledOut ?? false) && !apply.some((o) => o.kind === "Deployment"),
  });
  events.push(...limitEvents(domain, settings));
  const requeueAfterMs = nextCheck(snapshot, settings, now);
  return { apply, events, status, ...(requeueAfterMs !== undefined ? { requeueAfterMs } : {}) };
}

/** When to look at the domain again, whatever else happens: expiry, last use, DNS, certificate renewal. */
function nextCheck(snapshot: DomainSnapshot, settings: OperatorSettings, now: Date): number | undefined {
  const { plan } = snapshot.credentials;
  // An older version expires at a known instant: come back then.
  const nextExpiry = plan
    .map((p) => (p.expiresAt && p.state === "Active" ? Date.parse(p.expiresAt) - now.getTime() : Infinity))
    .reduce((a, b) => Math.min(a, b), Infinity);
  // A running relay is asked again for last use; pending DKIM records are looked up again.
  const dnsAgain =
    settings.dnsResolver && (snapshot.outbound?.dkimState.pending.length ?? 0) > 0 ? (settings.dnsCheckIntervalMs ?? 60_000) : Infinity;
  // The certificate is renewed, and its condition changes near expiry, at known instants too.
  const certificate = snapshot.certificate.nextCheck;
  const certificateDue = certificate ? Math.max(1_000, certificate.getTime() - now.getTime() + 500) : Infinity;
  const next = Math.min(
    Number.isFinite(nextExpiry) ? Math.max(1_000, nextExpiry + 500) : Infinity,
    snapshot.available > 0 && snapshot.pollsLastUse ? lastUseIntervalMs : Infinity,
    dnsAgain,
    certificateDue,
  );
  return Number.isFinite(next) ? next : undefined;
}

export interface DomainStatusInput {
  domain: SmtpDomain;
  credentials: CredentialsState;
  problems: readonly Problem[];
  /** Available replicas of the relay Deployment. */
  available: number;
  /** Served support addresses. */
  addressCount: number;
  /** SupportAddresses naming the domain that are not served; absent when not counted. */
  addressesNotServed?: number;
  settings: OperatorSettings;
  now: Date;
  /** Last use per credential version, as the relay reports it. */
  reportedUse?: ReadonlyMap<number, string>;
  dkim?: DkimState;
  certificate?: CertificateState;
  /** Whether the relay Deployment has rolled out its latest template (a mode change is done only then). */
  rolledOut?: boolean;
  /** The listed host names another domain holds: never the endpoint told. */
  withheld?: ReadonlySet<string>;
}

export function domainStatus(input: DomainStatusInput): SmtpDomainStatus {
  const { domain, credentials, problems, available, addressCount, settings, now, dkim, certificate, withheld } = input;
  const { plan, issued, retired } = credentials;
  const reportedUse = input.reportedUse ?? new Map<number, string>();
  const mode = inboundMode(domain);
  const modeChange = modeChangeOf(domain, input.rolledOut ?? false);
  const notServed = input.addressesNotServed ?? 0;
  const active = plan.filter((p) => p.state === "Active" && issued.has(p.version)).map((p) => p.version);
  // A refused re-addition or a hand-edited Secret changes nothing the relay accepts: with a version
  // still Active the domain serves on, and Stalled (not Ready) says what needs a change.
  const serving = (p: Problem) => active.length > 0 && (p.reason === "VersionRevoked" || p.reason === "SecretModified");
  const credentialProblems = problems.filter((p) => p.condition === "CredentialsIssued");
  const credentialProblem = credentialProblems.find((p) => !serving(p)) ?? credentialProblems[0];
  const relayProblem = problems.find((p) => p.condition === "RelayAvailable");
  const conditions: DesiredCondition[] = [
    credentialProblem
      ? { type: "CredentialsIssued", status: "False", reason: credentialProblem.reason, message: credentialProblem.message }
      : mode === "Forwarded"
        ? {
            type: "CredentialsIssued",
            status: "True",
            reason: "NotRequired",
            message: `inbound mode Forwarded: no inbound credentials are issued (the customer's mail service forwards to ${relayHostname(domain, settings, withheld)}:${endpointPort(domain)} without AUTH)${retired.size > 0 ? `; version(s) ${[...retired].sort((a, b) => a - b).join(",")} revoked for good` : ""}`,
          }
        : { type: "CredentialsIssued", status: "True", reason: "Issued", message: `${issued.size} credential version(s) issued` },
    ...(certificate ? [certificate.condition] : []),
    relayProblem
      ? { type: "RelayAvailable", status: "False", reason: relayProblem.reason, message: relayProblem.message }
      : available > 0
        ? { type: "RelayAvailable", status: "True", reason: "Available", message: `${available} relay replica(s) available` }
        : {
            type: "RelayAvailable",
            status: "False",
            reason: "Progressing",
            message: "waiting for the relay Deployment to have an available replica",
          },
    addressCount > 0
      ? {
          type: "AddressesConfigured",
          status: "True",
          reason: "AddressesServed",
          message: `${addressCount} support address(es) served${notServed > 0 ? `, ${notServed} not served (see their DomainReady)` : ""}`,
        }
      : {
          type: "AddressesConfigured",
          status: "False",
          reason: "NoAddresses",
          message:
            notServed > 0
              ? `none of the ${notServed} SupportAddress(es) naming this SmtpDomain is served: see their DomainReady`
              : "add at least one SupportAddress whose domainRef names this SmtpDomain",
        },
  ];
  const blocking = conditions.find(
    (c) => c.status !== "True" && !(c.type === "CredentialsIssued" && credentialProblem && serving(credentialProblem)),
  );
  conditions.push(
    blocking
      ? { type: "Ready", status: "False", reason: blocking.reason, message: blocking.message }
      : { type: "Ready", status: "True", reason: "Ready", message: "the domain is connected" },
  );
  // Informational: an unpublished key is not used, so it does not hold back Ready.
  if (dkim?.condition) conditions.push(dkim.condition);
  const limits = limitsCondition(domain, settings);
  if (limits) conditions.push(limits);
  const stalled = problems[0];
  conditions.push(
    stalled
      ? { type: "Stalled", status: "True", reason: stalled.reason, message: stalled.message }
      : { type: "Stalled", status: "False", reason: "Ready", message: "" },
    !stalled && modeChange
      ? { type: "Reconciling", status: "True", reason: "ModeChanging", message: modeChange.message }
      : !stalled && blocking?.reason === "Progressing"
        ? { type: "Reconciling", status: "True", reason: "Progressing", message: blocking.message }
        : { type: "Reconciling", status: "False", reason: "Ready", message: "" },
  );
  const generation = domain.metadata.generation ?? 0;
  const previous = new Map((domain.status?.credentials ?? []).map((c) => [c.version, c]));
  return {
    observedGeneration: generation,
    conditions: mergeConditions(domain.status?.conditions, conditions, generation, now),
    credentials: plan.flatMap((p) => {
      const credential = issued.get(p.version);
      if (!credential) return [];
      // The later of what status already says and what the relay reports (a restarted relay forgets).
      const known = [previous.get(p.version)?.lastUsedAt, reportedUse.get(p.version)].filter((t): t is string => t !== undefined);
      const lastUsedAt = known.length > 0 ? rfc3339(new Date(Math.max(...known.map((t) => Date.parse(t))))) : undefined;
      return [
        {
          version: p.version,
          secretName: credential.secretName,
          username: credential.username,
          state: p.state,
          createdAt: credential.createdAt,
          ...(p.expiresAt ? { expiresAt: p.expiresAt } : {}),
          ...(lastUsedAt ? { lastUsedAt } : {}),
          passwordSha256: credential.passwordSha256,
        },
      ];
    }),
    activeVersions: active.join(","),
    inboundMode: modeChange ? modeChange.from : mode,
    ...(retired.size > 0 ? { revokedVersions: [...retired].sort((a, b) => a - b) } : {}),
    addresses: addressCount,
    ...(input.addressesNotServed !== undefined ? { addressesNotServed: input.addressesNotServed } : {}),
    relay: {
      serviceName: names(domain).relay,
      endpoint: `${relayHostname(domain, settings, withheld)}:${endpointPort(domain)}`,
      limits: messageLimits(domain, settings),
    },
    ...(certificate?.status ? { tls: certificate.status } : {}),
    ...(dkim && dkim.records.length > 0
      ? { dkim: { records: dkim.records, ...(dkim.pending.length > 0 ? { pending: dkim.pending.join(",") } : {}) } }
      : {}),
  };
}

/**
 * A change of spec.inbound.mode still rolling out: the mode the relay pods served before (status.inboundMode,
 * Authenticated for a status written before modes existed) differs from the declared one and the relay
 * Deployment has not rolled out the new listeners yet. Everything else of the switch is applied already, in
 * the reconcile that saw it. A new domain (no status yet) has nothing to switch from. Pure.
 */
export function modeChangeOf(domain: SmtpDomain, rolledOut: boolean): { from: InboundMode; message: string } | undefined {
  const to = inboundMode(domain);
  const from = domain.status?.inboundMode ?? (domain.status?.relay ? "Authenticated" : undefined);
  if (from === undefined || from === to || rolledOut) return undefined;
  const applied =
    to === "Forwarded"
      ? "every credential version is revoked for good, the relay refuses AUTH, and the Service offers port 25 only"
      : "credentials are issued (see status.credentials), and the Service offers ports 587 and 465 instead of 25";
  return {
    from,
    message: `inbound mode changing from ${from} to ${to}: ${applied}; waiting for the relay Deployment to roll out its new listeners. The addresses verify again in ${to} mode`,
  };
}

const binaryUnits = [
  ["Gi", 2 ** 30],
  ["Mi", 2 ** 20],
  ["Ki", 2 ** 10],
] as const;
const size = (bytes: number) => {
  const unit = binaryUnits.find(([, n]) => bytes % n === 0);
  return unit ? `${bytes / unit[1]}${unit[0]}` : `${bytes} bytes`;
};

/**
 * The LimitsApplied condition, present only when spec.relay.limits asks for something. A request above the
 * installation's maximum (--relay-max-message-size, --relay-max-recipients) is served at the maximum: the relay
 * works, so the condition stays True, and LimitCapped warns while True (as CertificateReady's ExpiringSoon does)
 * with what was asked and what applies. Pure.
 */
export function limitsCondition(domain: SmtpDomain, settings: OperatorSettings): DesiredCondition | undefined {
  const wanted = domain.spec.relay?.limits;
  if (wanted?.maxMessageSize === undefined && wanted?.maxRecipients === undefined) return undefined;
  const applied = messageLimits(domain, settings);
  const capped: string[] = [];
  const requestedBytes = wanted.maxMessageSize !== undefined ? quantityInteger(wanted.maxMessageSize) : undefined;
  if (requestedBytes !== undefined && requestedBytes > applied.maxMessageBytes) {
    capped.push(
      `maxMessageSize ${String(wanted.maxMessageSize)} requested, ${size(applied.maxMessageBytes)} applied (--relay-max-message-size)`,
    );
  }
  if (wanted.maxRecipients !== undefined && wanted.maxRecipients > applied.maxRecipients) {
    capped.push(`maxRecipients ${wanted.maxRecipients} requested, ${applied.maxRecipients} applied (--relay-max-recipients)`);
  }
  if (capped.length === 0) {
    return {
      type: "LimitsApplied",
      status: "True",
      reason: "AsRequested",
      message: `the relay applies spec.relay.limits: maxMessageSize ${size(applied.maxMessageBytes)}, maxRecipients ${applied.maxRecipients}`,
    };
  }
  return {
    type: "LimitsApplied",
    status: "True",
    reason: "LimitCapped",
    message: `spec.relay.limits asks for more than the installation allows; the relay applies its maximum: ${capped.join("; ")}. Lower the request, or ask the platform team to raise the maximum`,
  };
}

/**
 * A LimitCapped Warning Event once per change (a new cap, another request, another maximum), not on every
 * reconcile, judged against the condition in status. The condition's first appearance is a change of its status,
 * which the apply step tells already (conditionEvents, a Warning for LimitCapped); this tells what that does not:
 * a True condition turning to LimitCapped or capped differently. Pure.
 */
export function limitEvents(domain: SmtpDomain, settings: OperatorSettings): PlannedEvent[] {
  const limits = limitsCondition(domain, settings);
  if (limits?.reason !== "LimitCapped") return [];
  const before = domain.status?.conditions?.find((c) => c.type === "LimitsApplied");
  if (before?.status !== limits.status) return [];
  if (before.reason === limits.reason && before.message === limits.message) return [];
  return [{ type: "Warning", reason: "LimitCapped", message: limits.message }];
}
