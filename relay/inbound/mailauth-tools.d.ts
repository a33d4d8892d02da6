// mailauth's own helpers (lib/tools.js, CommonJS, untyped): the relaxed
// alignment it applies for DMARC, Organizational Domains from the Public
// Suffix List (tldts), so our alignment agrees with mailauth's.
declare module "mailauth/lib/tools.js" {
  /** The entry of domainList whose Organizational Domain is fromDomain's (relaxed), or identical to it (strict); false when none. */
  export function getAlignment(fromDomain: string, domainList: readonly string[], strict?: boolean): { domain: string } | false;
}
