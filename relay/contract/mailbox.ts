// The one definition of a mailbox: the relay's parser of envelope addresses,
// the SupportAddress CRD's pattern (crds/schema.ts) and the relay config's
// address check (config-parser.ts) are all built from the pieces below, so what
// the API server admits, what the operator renders and what the relay accepts
// on the wire can never drift apart (test/unit/mailbox.test.ts holds them to a
// table of awkward addresses).
//
// Deliberately narrow: a dot-atom local part of ASCII atext and a DNS domain
// whose last label starts with a letter. Quoted local parts, source routes,
// `%` and `!` routing, address literals (bracketed or bare dotted quads),
// trailing dots and non-ASCII are refused: each is a way to make a check and a
// router read one address two ways.

/** RFC 5321 4.5.3.1.1. */
export const localPartMaxLength = 64;
/** RFC 5321's 256-octet path less its angle brackets (RFC 3696 errata 1690). */
export const mailboxMaxLength = 254;

// RFC 5322 atext without `%` and `!`, which older routers read as routing.
const atext = "[A-Za-z0-9#$&'*+/=?^_`{|}~-]";
const dotAtom = `${atext}+(\\.${atext}+)*`;
const label = "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?";
// No top-level domain starts with a digit: this keeps a bare dotted quad from reading as a domain.
const topLabel = "[a-z]([-a-z0-9]{0,61}[a-z0-9])?";

/**
 * A lowercase DNS name without a trailing dot, as a regular expression that JavaScript and RE2 (CEL's
 * `matches`) read alike. It is the SmtpDomain's domain and every mailbox's domain.
 */
export const domainPattern = `^(${label}\\.)+${topLabel}$`;
/**
 * A mailbox as the CRD stores it: any-case local part, lowercase domain. Read alike by JavaScript and RE2;
 * with `localPartLengthPattern` and `mailboxMaxLength` it admits exactly what parseMailbox accepts with its
 * domain already in lowercase.
 */
export const mailboxPattern = `^${dotAtom}@(${label}\\.)+${topLabel}$`;
/** The local part's length limit, as a pattern (a regular expression cannot count the dot-atom's characters). */
export const localPartLengthPattern = `^[^@]{1,${localPartMaxLength}}@`;

export type Mailbox = { local: string; domain: string; address: string };
export type AddressProblem = "Empty" | "SourceRoute" | "Quoted" | "AddressLiteral" | "RoutingCharacter" | "Malformed";

const localPart = new RegExp(`^${dotAtom}$`);
const domainName = new RegExp(domainPattern);
// Checked before the case folding: "\u212A" (the Kelvin sign) lowercases to an ASCII "k".
const ascii = /^[\x00-\x7f]*$/;

export function parseMailbox(raw: string): { ok: true; mailbox: Mailbox } | { ok: false; problem: AddressProblem } {
  if (raw.length === 0) return { ok: false, problem: "Empty" };
  if (raw.length > mailboxMaxLength) return { ok: false, problem: "Malformed" };
  if (raw.startsWith("@") || raw.includes(":")) return { ok: false, problem: "SourceRoute" };
  if (raw.includes('"') || raw.includes("\\")) return { ok: false, problem: "Quoted" };
  if (raw.includes("[") || raw.includes("]")) return { ok: false, problem: "AddressLiteral" };
  if (raw.includes("%") || raw.includes("!")) return { ok: false, problem: "RoutingCharacter" };
  const at = raw.indexOf("@");
  if (at <= 0 || at !== raw.lastIndexOf("@")) return { ok: false, problem: "Malformed" };
  const local = raw.slice(0, at);
  const domain = raw.slice(at + 1).toLowerCase();
  if (local.length > localPartMaxLength || !localPart.test(local)) return { ok: false, problem: "Malformed" };
  if (!ascii.test(raw) || !domainName.test(domain)) return { ok: false, problem: "Malformed" };
  // Local parts are matched case-insensitively, as every mailbox provider does.
  const canonical = `${local.toLowerCase()}@${domain}`;
  return { ok: true, mailbox: { local: local.toLowerCase(), domain, address: canonical } };
}

/** Why `address` may not stand in the relay config as an address of `domain` (it must be canonical), or undefined. */
export function configAddressProblem(address: string, domain: string): string | undefined {
  const parsed = parseMailbox(address);
  if (!parsed.ok) return `${address} is not a plain mailbox (${parsed.problem})`;
  if (parsed.mailbox.address !== address || parsed.mailbox.domain !== domain) return `${address} is not a lowercase address in ${domain}`;
  return undefined;
}
