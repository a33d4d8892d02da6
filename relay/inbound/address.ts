// The one parser of envelope addresses. The recipient check and the forwarder
// both use its result, so they can never disagree about where a message goes.
// Deliberately narrow: a dot-atom local part and a DNS domain. Quoted local
// parts, source routes, `%` and `!` routing, address literals, trailing dots
// and non-ASCII are refused: each is a way to make a check and a router
// read one address two ways.

export type Mailbox = { local: string; domain: string; address: string };
export type AddressProblem = "Empty" | "SourceRoute" | "Quoted" | "AddressLiteral" | "RoutingCharacter" | "Malformed";

const atext = /^[A-Za-z0-9!#$&'*+/=?^_`{|}~-]+$/;
const label = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

export function parseMailbox(raw: string): { ok: true; mailbox: Mailbox } | { ok: false; problem: AddressProblem } {
  if (raw.length === 0) return { ok: false, problem: "Empty" };
  if (raw.length > 254) return { ok: false, problem: "Malformed" };
  if (raw.startsWith("@") || raw.includes(":")) return { ok: false, problem: "SourceRoute" };
  if (raw.includes('"') || raw.includes("\\")) return { ok: false, problem: "Quoted" };
  if (raw.includes("[") || raw.includes("]")) return { ok: false, problem: "AddressLiteral" };
  if (raw.includes("%") || raw.includes("!")) return { ok: false, problem: "RoutingCharacter" };
  const at = raw.indexOf("@");
  if (at <= 0 || at !== raw.lastIndexOf("@")) return { ok: false, problem: "Malformed" };
  const local = raw.slice(0, at);
  const domain = raw.slice(at + 1).toLowerCase();
  if (local.length > 64 || !local.split(".").every((part) => atext.test(part))) return { ok: false, problem: "Malformed" };
  const labels = domain.split(".");
  if (labels.length < 2 || !labels.every((l) => label.test(l))) return { ok: false, problem: "Malformed" };
  // Local parts are matched case-insensitively, as every mailbox provider does.
  const canonical = `${local.toLowerCase()}@${domain}`;
  return { ok: true, mailbox: { local: local.toLowerCase(), domain, address: canonical } };
}
