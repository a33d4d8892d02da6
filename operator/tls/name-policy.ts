// Which names the installation's CA may vouch for. Two rules from one list:
// the host names a domain may claim (spec.relay.hostnames: under a suffix the
// installation allows, --allowed-hostname-suffixes, or its own default relay
// host name), and the X.509 name constraints written into the CA, so that
// even a certificate the operator was tricked into signing for another name
// does not verify. Pure.

/** A lowercase DNS name of at least two labels, no wildcard, no trailing dot. */
const suffixPattern = /^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/**
 * --allowed-hostname-suffixes: comma-separated DNS suffixes, lowercased, a
 * trailing dot dropped, duplicates dropped. A wildcard, a single label (a
 * top-level domain would let a tenant claim a whole TLD) or a malformed name is
 * refused with the flag's name.
 */
export function parseHostnameSuffixes(text: string): string[] {
  const suffixes = [
    ...new Set(
      text
        .split(",")
        .map((s) => s.trim().toLowerCase().replace(/\.$/, ""))
        .filter(Boolean),
    ),
  ];
  for (const suffix of suffixes) {
    if (suffix.startsWith("*") || suffix.startsWith(".")) {
      throw new Error(
        `--allowed-hostname-suffixes takes DNS suffixes such as relay.example.com (every name under it is allowed; no "*." or leading dot), got ${JSON.stringify(suffix)}`,
      );
    }
    if (!suffixPattern.test(suffix) || !suffix.includes(".")) {
      throw new Error(
        `--allowed-hostname-suffixes must be comma-separated DNS names of at least two labels, such as relay.example.com,mail.example.org, got ${JSON.stringify(suffix)}`,
      );
    }
  }
  if (suffixes.length > 32) throw new Error(`--allowed-hostname-suffixes takes at most 32 suffixes, got ${suffixes.length}`);
  return suffixes;
}

/** Whether `name` is `suffix` or lies under it, on a label boundary (evilrelay.example.com is not under relay.example.com). */
export function isUnder(name: string, suffix: string): boolean {
  const n = name.toLowerCase().replace(/\.$/, "");
  const s = suffix.toLowerCase().replace(/\.$/, "");
  return n === s || n.endsWith(`.${s}`);
}

export interface HostnamePolicy {
  /** The installation's allowed suffixes (--allowed-hostname-suffixes). */
  allowedSuffixes: readonly string[];
  /** This domain's own default relay host name (<name>.<namespace>.<--relay-host-suffix>): always allowed. */
  defaultHostname: string;
}

/**
 * The names of `hostnames` a domain may not claim. A wildcard is never
 * allowed: *.relay.example.com would cover every other tenant's relay under
 * that suffix. Names under --relay-host-suffix other than the domain's own
 * default are refused too: they are other domains' default names.
 */
export function refusedHostnames(hostnames: readonly string[], policy: HostnamePolicy): string[] {
  return hostnames.filter((raw) => {
    const name = raw.toLowerCase();
    if (name.includes("*")) return true;
    if (name === policy.defaultHostname.toLowerCase()) return false;
    return !policy.allowedSuffixes.some((suffix) => isUnder(name, suffix));
  });
}

/** The condition message for refused names: which, what is allowed, how to fix it. */
export function hostnameNotAllowedMessage(refused: readonly string[], policy: HostnamePolicy, operatorIssued: boolean): string {
  const allowed =
    policy.allowedSuffixes.length > 0
      ? `the allowed suffixes ${policy.allowedSuffixes.join(", ")}`
      : "no allowed suffixes (none are configured)";
  const what = operatorIssued ? "no certificate is issued for this domain" : "the domain is not made Ready with them";
  return (
    `spec.relay.hostnames ${refused.join(", ")} ${refused.length === 1 ? "is" : "are"} not under ${allowed} (the installation's --allowed-hostname-suffixes, chart value relay.allowedHostnameSuffixes): ` +
    `${what}; use names under an allowed suffix, or remove spec.relay.hostnames to use the default relay host name ${policy.defaultHostname}`
  );
}

/** The Services' cluster names a relay certificate covers end in these (render.ts certificateNames). */
export const clusterServiceSuffixes = ["svc", "svc.cluster.local"] as const;

/**
 * The CA's permitted dNSName subtrees (RFC 5280 4.2.1.10): the allowed
 * suffixes, the default relay host suffix and the Services' cluster names.
 * Sorted and de-duplicated, so the same settings always give the same list
 * (a CA is rotated when this list changes).
 */
export function permittedDnsNames(allowedSuffixes: readonly string[], relayHostSuffix: string): string[] {
  const all = [...allowedSuffixes, relayHostSuffix, ...clusterServiceSuffixes].map((s) => s.toLowerCase().replace(/\.$/, ""));
  // A suffix under another one adds nothing: drop it, so the list is the smallest that says the same.
  const unique = [...new Set(all)];
  return unique.filter((s) => !unique.some((other) => other !== s && isUnder(s, other))).sort();
}
