// Which SmtpDomain each relay host name belongs to, across every namespace the
// operator watches: one installation CA signs every relay certificate, so a
// name must be in one domain's certificate only, or one account gets a
// certificate (and a relay) for another account's relay name. Pure: the
// controller judges every cached domain at once, the planner reports a loser's
// names (HostnameConflict) and the certificate leaves them out.
//
// The rules, in order:
// 1. A domain's default relay host name (<name>.<namespace>.<suffix>) is its own,
//    whether it uses it or not: unique by construction (a namespace has no dot),
//    so no other domain may list it in spec.relay.hostnames, however old.
// 2. Any other name listed in spec.relay.hostnames belongs to the oldest domain
//    that lists it: by creationTimestamp, then by namespace, then by name
//    (compared as code points), so every replica and every run decides alike.
// A domain being deleted keeps its names until it is gone (its certificate is
// in use until then); a domain not served (a limit, a conflict) keeps them too,
// so a name does not move back and forth as limits change.
import type { SmtpDomain } from "../../crds/schema.js";

export interface HostnameConflict {
  /** The name this domain lists and may not have. */
  hostname: string;
  /** The domain that has it. Never told to another namespace (see conflictMessage). */
  holder: { namespace: string; name: string };
  /** Why the holder has it: it is its default relay host name, or it claimed it earlier. */
  why: "DefaultName" | "Earlier";
}

type Claimant = Pick<SmtpDomain, "metadata" | "spec">;

const keyOf = (domain: Claimant) => `${domain.metadata.namespace}/${domain.metadata.name}`;

/** The default relay host name of a domain. */
export function defaultHostname(domain: Claimant, relayHostSuffix: string): string {
  return `${domain.metadata.name}.${domain.metadata.namespace}.${relayHostSuffix}`.toLowerCase();
}

/** Every name a domain claims: its default relay host name and the ones it lists. */
export function claimedHostnames(domain: Claimant, relayHostSuffix: string): string[] {
  return [...new Set([defaultHostname(domain, relayHostSuffix), ...declared(domain)])];
}

const declared = (domain: Claimant) => (domain.spec.relay?.hostnames ?? []).map((name) => name.toLowerCase());

const created = (domain: Claimant) => {
  const time = Date.parse(String(domain.metadata.creationTimestamp ?? ""));
  return Number.isNaN(time) ? 0 : time;
};

const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Oldest first; equal creation times (one-second resolution) by namespace, then name. */
function byAge(a: Claimant, b: Claimant): number {
  return (
    created(a) - created(b) ||
    compare(a.metadata.namespace ?? "", b.metadata.namespace ?? "") ||
    compare(a.metadata.name ?? "", b.metadata.name ?? "")
  );
}

/** The host names each domain lists but may not have, by "namespace/name"; a domain with none is absent. */
export function judgeHostnames(domains: readonly Claimant[], relayHostSuffix: string): Map<string, HostnameConflict[]> {
  const holder = (domain: Claimant) => ({ namespace: domain.metadata.namespace ?? "", name: domain.metadata.name ?? "" });
  const defaults = new Map(domains.map((d) => [defaultHostname(d, relayHostSuffix), d]));
  const earliest = new Map<string, Claimant>();
  const conflicts = new Map<string, HostnameConflict[]>();
  for (const domain of [...domains].sort(byAge)) {
    const lost: HostnameConflict[] = [];
    for (const hostname of new Set(declared(domain))) {
      const owner = defaults.get(hostname);
      if (owner && keyOf(owner) !== keyOf(domain)) {
        lost.push({ hostname, holder: holder(owner), why: "DefaultName" });
        continue;
      }
      const first = earliest.get(hostname);
      if (first && keyOf(first) !== keyOf(domain)) {
        lost.push({ hostname, holder: holder(first), why: "Earlier" });
        continue;
      }
      earliest.set(hostname, domain);
    }
    if (lost.length > 0) conflicts.set(keyOf(domain), lost);
  }
  return conflicts;
}

/** The names a domain lists but does not hold: its certificate, its relay and its clients' snippets leave them out. */
export function withheldHostnames(conflicts: readonly HostnameConflict[] | undefined): Set<string> {
  return new Set((conflicts ?? []).map((c) => c.hostname.toLowerCase()));
}

/**
 * What the losing domain is told. The holder is named only when it is in the same namespace (the same
 * account): another account's namespace and domain names are theirs, and a tenant listing a name learns
 * only that it is taken, which refusing it tells anyway.
 */
export function conflictMessage(domain: Claimant, conflicts: readonly HostnameConflict[]): string {
  const each = conflicts.map(({ hostname, holder, why }) => {
    const sameAccount = holder.namespace === domain.metadata.namespace;
    const who = sameAccount ? `SmtpDomain ${holder.name}` : "an SmtpDomain in another namespace";
    return `${hostname} belongs to ${who}${why === "DefaultName" ? " (it is its default relay host name)" : ", which listed it earlier"}`;
  });
  return `${each.join("; ")}. A host name is in one relay certificate only: it is left out of this relay's certificate. Remove it from spec.relay.hostnames; left there, it comes to this domain by itself once no other SmtpDomain holds it`;
}
