// Who an outbound message says wrote it. The envelope sender decides the route
// and the login (route.ts); the recipient sees the header, and the relay signs
// that header with d=<customer domain>. So the header must name the same
// mailbox as the envelope, or a submission credential could send, signed, as
// any address of the domain or as the helpdesk itself:
//
// - exactly one From: field, with exactly one mailbox (no group, no list), its
//   address the envelope sender (compared after the envelope's own parser,
//   so both are read one way: domain and local part case-insensitive);
// - the display name is free (the helpdesk's brand name goes there); it is
//   not an address and nothing here reads it as one;
// - Sender: (and Resent-From: / Resent-Sender:) are optional, but if present
//   each must be one field with that same one mailbox. Sender names who
//   actually sent the message and mail readers show it ("X on behalf of Y"):
//   another address there would let the credential speak as that person.
//
// The parser is strict RFC 5322 (comments nest and have quoted-pairs) and
// refuses the obsolete and ambiguous forms (source routes, quoted or spaced
// local parts, empty list elements, control characters) instead of guessing:
// each is a way for this check and a mail reader to see two addresses.
import { Readable } from "node:stream";
import { SmtpReply } from "../forward/cut-through.js";
import { parseMailbox } from "../inbound/address.js";
import { headerFields } from "./dkim.js";

export type AuthorRefusal =
  | "FromMissing"
  | "FromRepeated"
  | "FromNotOneMailbox"
  | "FromMalformed"
  | "FromSystemDomain"
  | "FromMismatch"
  | "SenderMismatch"
  | "ResentMismatch"
  | "HeaderUnterminated";

export type AuthorVerdict = { ok: true } | { ok: false; reason: AuthorRefusal; detail: string };

/** A refused message: the reply the helpdesk gets, with the stable reason for metrics and logs. */
export class AuthorRefused extends SmtpReply {
  constructor(
    readonly reason: AuthorRefusal,
    detail: string,
  ) {
    super(550, `5.7.1 Header refused (${reason}): ${detail}`);
    this.name = "AuthorRefused";
  }
}

/** The check on a header section (CRLF line ends, as the message filter emits it). */
export function authorVerdict(headerSection: string, sender: string, systemDomains: ReadonlySet<string>): AuthorVerdict {
  const fields = headerFields(headerSection);
  const from = fields.filter((f) => f.name === "from");
  const must = `it must name exactly one mailbox, ${sender}, the envelope sender`;
  if (from.length === 0) return { ok: false, reason: "FromMissing", detail: `no From: field; ${must}` };
  if (from.length > 1) return { ok: false, reason: "FromRepeated", detail: `${from.length} From: fields; ${must}` };
  const author = singleMailbox(from[0]!.raw);
  if (!author.ok)
    return {
      ok: false,
      reason: author.reason === "NotOne" ? "FromNotOneMailbox" : "FromMalformed",
      detail: `From: ${author.problem}; ${must}`,
    };
  if (author.domain !== sender.slice(sender.lastIndexOf("@") + 1) && systemDomains.has(author.domain)) {
    return { ok: false, reason: "FromSystemDomain", detail: `From: is in the helpdesk's own domain ${author.domain}; ${must}` };
  }
  if (author.address !== sender) return { ok: false, reason: "FromMismatch", detail: `From: names another address; ${must}` };
  for (const [name, reason] of [
    ["sender", "SenderMismatch"],
    ["resent-from", "ResentMismatch"],
    ["resent-sender", "ResentMismatch"],
  ] as const) {
    const present = fields.filter((f) => f.name === name);
    if (present.length === 0) continue;
    const other = present.length === 1 ? singleMailbox(present[0]!.raw) : undefined;
    if (!other?.ok || other.address !== sender) {
      return { ok: false, reason, detail: `a ${name} field must be one field naming ${sender}, the From: address, when present` };
    }
  }
  return { ok: true };
}

type Mailbox = { ok: true; address: string; domain: string } | { ok: false; reason: "NotOne" | "Malformed"; problem: string };

/** The one mailbox of a From:/Sender: field (its raw text, name included), or why it is not exactly one. */
export function singleMailbox(raw: string): Mailbox {
  const value = raw.slice(raw.indexOf(":") + 1).replace(/\r\n/g, "");
  const tokens = tokenize(value);
  if (typeof tokens === "string") return { ok: false, reason: "Malformed", problem: tokens };
  const mailboxes: string[] = [];
  let i = 0;
  for (;;) {
    const parsed = mailbox(tokens, i);
    if (typeof parsed === "string")
      return { ok: false, reason: parsed.startsWith("group") || parsed.startsWith("no mailbox") ? "NotOne" : "Malformed", problem: parsed };
    mailboxes.push(parsed.address);
    i = parsed.next;
    if (i === tokens.length) break;
    if (tokens[i]!.text !== ",") return { ok: false, reason: "Malformed", problem: "unexpected text after the address" };
    i++;
  }
  if (mailboxes.length !== 1) return { ok: false, reason: "NotOne", problem: `${mailboxes.length} mailboxes` };
  const checked = parseMailbox(mailboxes[0]!);
  if (!checked.ok) return { ok: false, reason: "Malformed", problem: `address not accepted (${checked.problem})` };
  return { ok: true, address: checked.mailbox.address, domain: checked.mailbox.domain };
}

interface Token {
  kind: "atom" | "quoted" | "literal" | "special";
  text: string;
  /** Whether whitespace or a comment came right before it (an addr-spec allows none inside). */
  spaced: boolean;
}

const specials = new Set(["(", ")", "<", ">", "[", "]", ":", ";", "@", "\\", ",", ".", '"']);

/** RFC 5322 lexical tokens, comments and folding whitespace dropped; a string says why it is not valid. */
function tokenize(value: string): Token[] | string {
  const tokens: Token[] = [];
  let spaced = false;
  let i = 0;
  while (i < value.length) {
    const c = value[i]!;
    const code = c.charCodeAt(0);
    if (code < 0x20 ? c !== "\t" : code === 0x7f) return "a control character";
    if (c === " " || c === "\t") {
      spaced = true;
      i++;
    } else if (c === "(") {
      const end = skipComment(value, i);
      if (end < 0) return "an unterminated comment";
      spaced = true;
      i = end;
    } else if (c === '"' || c === "[") {
      const close = c === '"' ? '"' : "]";
      let text = "";
      let j = i + 1;
      for (; j < value.length && value[j] !== close; j++) {
        if (value[j] === "\\") j++;
        text += value[j] ?? "";
      }
      if (j >= value.length) return c === '"' ? "an unterminated quoted string" : "an unterminated domain literal";
      tokens.push({ kind: c === '"' ? "quoted" : "literal", text, spaced });
      spaced = false;
      i = j + 1;
    } else if (specials.has(c)) {
      if (c === ")" || c === "]" || c === "\\") return `a stray ${c}`;
      tokens.push({ kind: "special", text: c, spaced });
      spaced = false;
      i++;
    } else {
      let j = i;
      // atext, and UTF-8 beyond ASCII (RFC 6532) — the address parser refuses the latter in addresses.
      while (
        j < value.length &&
        !specials.has(value[j]!) &&
        value[j] !== " " &&
        value[j] !== "\t" &&
        value.charCodeAt(j) > 0x20 &&
        value.charCodeAt(j) !== 0x7f
      )
        j++;
      tokens.push({ kind: "atom", text: value.slice(i, j), spaced });
      spaced = false;
      i = j;
    }
  }
  return tokens;
}

/** The index after a comment starting at `start` (nested, with quoted-pairs), or -1. */
function skipComment(value: string, start: number): number {
  let depth = 0;
  for (let i = start; i < value.length; i++) {
    const c = value[i];
    if (c === "\\") i++;
    else if (c === "(") depth++;
    else if (c === ")" && --depth === 0) return i + 1;
  }
  return -1;
}

/** One mailbox (name-addr or addr-spec) from token `start`; a string says why not. */
function mailbox(tokens: Token[], start: number): { address: string; next: number } | string {
  let i = start;
  // display-name = phrase: words, and (obs-phrase) dots, as in "John Q. Public".
  while (i < tokens.length && (tokens[i]!.kind === "atom" || tokens[i]!.kind === "quoted" || (i > start && tokens[i]!.text === "."))) i++;
  const next = tokens[i];
  if (next?.text === ":") return "group syntax (a list of mailboxes)";
  if (next?.text === "<") {
    const spec = addrSpec(tokens, i + 1);
    if (typeof spec === "string") return spec;
    if (tokens[spec.next]?.text !== ">") return "an unterminated <address>";
    return { address: spec.address, next: spec.next + 1 };
  }
  if (i === start && next === undefined) return "no mailbox";
  if (i === start && next?.text === ",") return "no mailbox in a list element";
  // No angle brackets: the whole mailbox is an addr-spec.
  return addrSpec(tokens, start);
}

/** local-part "@" domain, dot-atoms with nothing in between; the raw address text. */
function addrSpec(tokens: Token[], start: number): { address: string; next: number } | string {
  let i = start;
  if (tokens[i]?.text === "@") return "a source route";
  if (tokens[i]?.kind === "quoted") return "a quoted local part";
  const local = dotAtom(tokens, i);
  if (typeof local === "string") return local;
  i = local.next;
  if (tokens[i]?.text !== "@" || tokens[i]!.spaced) return "not an address (local@domain)";
  if (tokens[i + 1]?.kind === "literal") return "an address literal";
  const domain = dotAtom(tokens, i + 1);
  if (typeof domain === "string") return domain;
  return { address: `${local.text}@${domain.text}`, next: domain.next };
}

/** Atoms joined by dots; whitespace or a comment may come before it, never inside. */
function dotAtom(tokens: Token[], start: number): { text: string; next: number } | string {
  let i = start;
  let text = "";
  for (;;) {
    const atom = tokens[i];
    if (atom?.kind !== "atom") return "not an address (local@domain)";
    if (atom.spaced && i !== start) return "whitespace or a comment inside the address";
    text += atom.text;
    i++;
    if (tokens[i]?.text !== "." || tokens[i]!.spaced) return { text, next: i };
    text += ".";
    i++;
  }
}

const endOfHeader = Buffer.from("\r\n\r\n");

/**
 * Reads the message's header section, checks its author, and hands back the
 * message unchanged. Nothing reaches the next hop before the verdict: a
 * refused message never opens a transaction there. The header section is
 * bounded by the message filter (maxHeaderBytes) before it gets here.
 */
export async function checkAuthor(
  message: Readable,
  sender: string,
  systemDomains: ReadonlySet<string>,
  maxHeaderBytes: number,
): Promise<Readable> {
  const { head, ended } = await readHeaderSection(message, maxHeaderBytes + endOfHeader.length);
  if (head === undefined)
    throw new AuthorRefused("HeaderUnterminated", `the header section does not end with an empty line within ${maxHeaderBytes} bytes`);
  const split = head.subarray(0, 2).equals(endOfHeader.subarray(0, 2)) ? 0 : head.indexOf(endOfHeader);
  const section = head.subarray(0, split < 0 ? head.length : split + 2).toString("latin1");
  const verdict = authorVerdict(section, sender, systemDomains);
  if (!verdict.ok) throw new AuthorRefused(verdict.reason, verdict.detail);
  if (ended) return Readable.from([head]);
  // Back where it came from: the next hop reads the same stream, no extra stage per chunk.
  message.unshift(head);
  return message;
}

/** The bytes up to and including the end of the header section (and whatever came with it); undefined past `maxBytes` without one. */
function readHeaderSection(message: Readable, maxBytes: number): Promise<{ head: Buffer | undefined; ended: boolean }> {
  return new Promise((resolve, reject) => {
    let head: Buffer = Buffer.alloc(0);
    const finish = (error: Error | undefined, ended = false, tooLong = false) => {
      message.off("readable", onReadable);
      message.off("end", onEnd);
      message.off("error", onError);
      message.off("close", onClose);
      if (error) reject(error);
      else resolve({ head: tooLong ? undefined : head, ended });
    };
    const onReadable = () => {
      for (let chunk: Buffer | null; (chunk = message.read() as Buffer | null) !== null;) {
        const from = Math.max(0, head.length - 3);
        head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
        const end = head.subarray(0, 2).equals(endOfHeader.subarray(0, 2)) ? 0 : head.indexOf(endOfHeader, from);
        // A body that starts without an empty line would otherwise be held whole in memory.
        if (end > maxBytes || (end < 0 && head.length > maxBytes)) return finish(undefined, false, true);
        if (end >= 0) return finish(undefined);
      }
    };
    const onEnd = () => finish(undefined, true);
    const onError = (error: Error) => finish(error);
    const onClose = () => finish(new Error("the message ended before its header section"));
    message.on("readable", onReadable);
    message.once("end", onEnd);
    message.once("error", onError);
    message.once("close", onClose);
  });
}
