// The product's rules about which domains and addresses are served, as pure
// functions of what exists (cluster-wide, for conflicts). Every "no" comes with
// a stable reason and a message that says what to change. Ties are broken
// deterministically: the oldest object wins, then namespace/name order.
import type { ReasonName } from "../../crds/conditions.js";
import type { SmtpDomain, SupportAddress } from "../../crds/schema.js";

export interface Limits {
  addressesPerDomain: number;
  domainsPerNamespace: number;
  addressesPerNamespace: number;
}

export const defaultLimits: Limits = { addressesPerDomain: 50, domainsPerNamespace: 4, addressesPerNamespace: 200 };

export type Verdict = { served: true } | { served: false; reason: ReasonName; message: string };

type Aged = { metadata: { creationTimestamp?: string | Date; namespace?: string; name?: string } };
// Each object's sort key made once (objects are replaced, never changed, when the informer sees a change),
// and compared with one collator: what `localeCompare` does, without building a collator per comparison.
const ageKeys = new WeakMap<Aged, string>();
const created = (o: Aged) => {
  let k = ageKeys.get(o);
  if (k === undefined)
    ageKeys.set(o, (k = `${new Date(o.metadata.creationTimestamp ?? 0).toISOString()} ${o.metadata.namespace}/${o.metadata.name}`));
  return k;
};
const collator = new Intl.Collator();
const byAge = <T extends Aged>(a: T, b: T) => collator.compare(created(a), created(b));
const key = (o: { metadata: { namespace?: string; name?: string } }) => `${o.metadata.namespace}/${o.metadata.name}`;

/** Whether a mail domain is one of the helpdesk's own system domains, or under one. */
export function isSystemDomain(mailDomain: string, systemDomains: readonly string[]): boolean {
  const d = mailDomain.toLowerCase();
  return systemDomains.some((s) => d === s || d.endsWith(`.${s}`));
}

/**
 * Which SmtpDomains are served: not a system domain, within the namespace
 * limit and not claimed earlier elsewhere. A system domain is judged first and
 * claims nothing, so it never takes a slot or blocks a customer's domain.
 */
export function judgeDomains(all: readonly SmtpDomain[], limits: Limits, systemDomains: readonly string[] = []): Map<string, Verdict> {
  const verdicts = new Map<string, Verdict>();
  const live = all.filter((d) => !d.metadata.deletionTimestamp).sort(byAge);
  const firstClaim = new Map<string, SmtpDomain>();
  const perNamespace = new Map<string, number>();
  for (const domain of live) {
    if (isSystemDomain(domain.spec.domain, systemDomains)) {
      verdicts.set(key(domain), {
        served: false,
        reason: "SystemDomain",
        message: `${domain.spec.domain} is one of the helpdesk's own system domains and can never be connected; nothing was created for it`,
      });
      continue;
    }
    const earlier = firstClaim.get(domain.spec.domain);
    if (earlier && earlier.metadata.namespace !== domain.metadata.namespace) {
      verdicts.set(key(domain), {
        served: false,
        reason: "DomainConflict",
        message: `${domain.spec.domain} is already connected in namespace ${earlier.metadata.namespace}; the earlier one keeps working`,
      });
      continue;
    }
    if (earlier) {
      verdicts.set(key(domain), {
        served: false,
        reason: "DomainConflict",
        message: `${domain.spec.domain} is already connected by SmtpDomain ${earlier.metadata.name} in this namespace`,
      });
      continue;
    }
    const count = perNamespace.get(domain.metadata.namespace!) ?? 0;
    if (count >= limits.domainsPerNamespace) {
      verdicts.set(key(domain), {
        served: false,
        reason: "LimitExceeded",
        message: `at most ${limits.domainsPerNamespace} domains per account (namespace); the oldest are served`,
      });
      continue;
    }
    firstClaim.set(domain.spec.domain, domain);
    perNamespace.set(domain.metadata.namespace!, count + 1);
    verdicts.set(key(domain), { served: true });
  }
  return verdicts;
}

export interface AddressWorld {
  domains: readonly SmtpDomain[];
  addresses: readonly SupportAddress[];
  domainVerdicts: ReadonlyMap<string, Verdict>;
  systemDomains: readonly string[];
  limits: Limits;
  /** Whether the outbound credentials Secret exists and has non-empty username and password. */
  /** refused: why a value it has is not read (too large), a message naming the Secret and key, never the value. */
  outboundSecret: (namespace: string, name: string) => "ok" | "missing" | "invalid" | { refused: string };
}

/** Which SupportAddresses are served, each with the reason when not. */
export function judgeAddresses(world: AddressWorld): Map<string, Verdict> {
  const verdicts = new Map<string, Verdict>();
  const firstClaim = new Map<string, SupportAddress>();
  const perDomain = new Map<string, number>();
  const perNamespace = new Map<string, number>();
  const live = world.addresses.filter((a) => !a.metadata.deletionTimestamp).sort(byAge);
  const domains = new Map(world.domains.map((d) => [key(d), d]));
  for (const address of live) {
    const verdict = judgeOne(address, world, domains, firstClaim, perDomain, perNamespace);
    verdicts.set(key(address), verdict);
  }
  return verdicts;
}

function judgeOne(
  address: SupportAddress,
  world: AddressWorld,
  domains: ReadonlyMap<string, SmtpDomain>,
  firstClaim: Map<string, SupportAddress>,
  perDomain: Map<string, number>,
  perNamespace: Map<string, number>,
): Verdict {
  const namespace = address.metadata.namespace!;
  const mail = address.spec.address.toLowerCase();
  const mailDomain = mail.slice(mail.lastIndexOf("@") + 1);
  if (isSystemDomain(mailDomain, world.systemDomains)) {
    return {
      served: false,
      reason: "SystemAddress",
      message: `${mailDomain} is one of the helpdesk's own system domains and cannot be connected`,
    };
  }
  const domain = domains.get(`${namespace}/${address.spec.domainRef.name}`);
  if (!domain)
    return {
      served: false,
      reason: "DomainNotFound",
      message: `SmtpDomain ${address.spec.domainRef.name} does not exist in namespace ${namespace}`,
    };
  if (mailDomain !== domain.spec.domain) {
    return {
      served: false,
      reason: "DomainMismatch",
      message: `${mail} is not in ${domain.spec.domain}, the domain of SmtpDomain ${domain.metadata.name}; inbound and outbound use the same domain`,
    };
  }
  const domainVerdict = world.domainVerdicts.get(key(domain));
  if (domainVerdict && !domainVerdict.served)
    return {
      served: false,
      reason: "DomainNotReady",
      message: `SmtpDomain ${domain.metadata.name} is not served: ${domainVerdict.message}`,
    };
  const earlier = firstClaim.get(mail);
  if (earlier) {
    return earlier.metadata.namespace === namespace
      ? { served: false, reason: "AddressConflict", message: `${mail} is already connected by SupportAddress ${earlier.metadata.name}` }
      : {
          served: false,
          reason: "AddressConflict",
          message: `${mail} is already connected in namespace ${earlier.metadata.namespace}; the earlier one keeps working`,
        };
  }
  const inDomain = perDomain.get(key(domain)) ?? 0;
  const inNamespace = perNamespace.get(namespace) ?? 0;
  if (inDomain >= world.limits.addressesPerDomain) {
    return {
      served: false,
      reason: "LimitExceeded",
      message: `at most ${world.limits.addressesPerDomain} addresses per domain; the oldest are served`,
    };
  }
  if (inNamespace >= world.limits.addressesPerNamespace) {
    return {
      served: false,
      reason: "LimitExceeded",
      message: `at most ${world.limits.addressesPerNamespace} addresses per account (namespace); the oldest are served`,
    };
  }
  // Counted (and claimed) before the Secret check: a broken Secret does not free a slot for a younger address.
  firstClaim.set(mail, address);
  perDomain.set(key(domain), inDomain + 1);
  perNamespace.set(namespace, inNamespace + 1);
  const secret = world.outboundSecret(namespace, address.spec.outbound.credentialsSecretRef.name);
  if (secret === "missing")
    return {
      served: false,
      reason: "CredentialsSecretNotFound",
      message: `Secret ${address.spec.outbound.credentialsSecretRef.name} (outbound.credentialsSecretRef) does not exist`,
    };
  if (typeof secret === "object") return { served: false, reason: "CredentialsSecretInvalid", message: secret.refused };
  if (secret === "invalid")
    return {
      served: false,
      reason: "CredentialsSecretInvalid",
      message: `Secret ${address.spec.outbound.credentialsSecretRef.name} needs non-empty username and password keys`,
    };
  return { served: true };
}

/** The customer's server an address sends through, its defaults applied (587 for StartTLS, 465 for Implicit). */
export function outboundServer(spec: SupportAddress["spec"]["outbound"]): { host: string; port: number; tls: "StartTLS" | "Implicit" } {
  const tls = spec.tls ?? "StartTLS";
  return { host: spec.host, port: spec.port ?? (tls === "Implicit" ? 465 : 587), tls };
}
