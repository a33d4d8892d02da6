// The message as it streams from the sender to the next hop. One pass, bounded
// memory (the header section at most), and every rule about the content:
//
// - line endings: in the body every bare CR and bare LF becomes CRLF, so no
//   line-ending variant can end the message early at the next hop (SMTP
//   smuggling); in the header section a bare CR or LF refuses the message,
//   since normalising it would turn one field into two (RFC 5322 2.2: CR and
//   LF occur in a field only as the CRLF of a fold);
// - header end: the header section ends at the first line that is neither a
//   field (RFC 5322 field-name, then ":") nor a continuation of one; when that
//   line is not empty an empty line is put before it, so every reader
//   downstream starts the body where the filter did;
// - limits: total size, line length, header section size, Received hops;
// - trust: Authentication-Results whose authserv-id any reader could take
//   for ours (see claimsAuthservId) and our own X-SmtpConnector-* headers are
//   removed; ours are prepended.
//
// A violation stops the output (the caller then aborts the next-hop
// transaction, so no truncated message is ever accepted) while the caller
// keeps draining the input.
import { Transform, type TransformCallback } from "node:stream";
import { verificationHeader as verificationHeaderName } from "../contract/verification-message.js";

export type FilterRejection = "TooBig" | "LineTooLong" | "HeaderTooLarge" | "TooManyHops" | "BareLineEnding";

export class MessageRejected extends Error {
  constructor(
    readonly rejection: FilterRejection,
    readonly responseCode: number,
    message: string,
  ) {
    super(message);
    this.name = "MessageRejected";
  }
}

export interface FilterOptions {
  maxBytes: number;
  maxLineBytes: number;
  maxHeaderBytes: number;
  maxReceivedHops: number;
  /** Our authserv-id: Authentication-Results with it are forged unless we add them. */
  authservId: string;
  /** Header fields to prepend, each ending in CRLF. */
  prepend: string;
  /** Outbound: every header field stays as the sender wrote it (nothing removed). */
  preserveHeaders?: boolean;
  /** Keep the header fields as they arrived in arrivedFields (the forwarded listener's checks). */
  recordArrived?: boolean;
}

const CR = 0x0d;
const LF = 0x0a;
const CRLF = Buffer.from("\r\n");
const ownHeaderPrefix = "x-smtpconnector-";
const verificationHeader = verificationHeaderName.toLowerCase();
const tokenPattern = /^[A-Za-z0-9_-]{16,128}$/;

function tokenOf(field: Buffer[]): string | undefined {
  const value = field.map((l) => l.toString("latin1")).join("");
  const token = value.slice(value.indexOf(":") + 1).trim();
  return tokenPattern.test(token) ? token : undefined;
}

export class MessageFilter extends Transform {
  /** Set once the message broke a rule; nothing more is emitted. */
  rejection: MessageRejected | undefined;
  /** The operator's one-time verification token, when the message carries one (X-SmtpConnector-Verification). */
  verificationToken: string | undefined;
  inputBytes = 0;
  /**
   * The header fields as they arrived (after the header-end rule, before any
   * removal), each with its CRLF, once the header section ended: what the
   * forwarded listener's checks judge, since the verdict is about the bytes
   * that arrived and our own removals must not break a signature over them.
   */
  arrivedFields: { name: string; raw: Buffer }[] | undefined;
  /** Bytes of the output before the empty line that ends the header section (prepended and kept fields). */
  outputHeaderBytes = 0;
  private lineBytes = 0;
  private pendingCR = false;
  /** The pending CR ended a line of the header section (where a bare CR refuses the message). */
  private pendingCRInHeader = false;
  private inHeader = true;
  private headerLines: Buffer[] = [];
  private headerBytes = 0;
  private currentLine: Buffer[] = [];
  // Output of one input chunk, pushed as one buffer: one socket write per
  // chunk instead of one per line (per-line writes cost more CPU than all
  // the rest of the relay).
  private pending: Buffer[] = [];

  constructor(private readonly options: FilterOptions) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    if (this.rejection) return done();
    this.inputBytes += chunk.length;
    if (this.inputBytes > this.options.maxBytes) {
      this.reject("TooBig", 552, `5.3.4 Message exceeds the maximum size of ${this.options.maxBytes} bytes`);
      return done();
    }
    let start = 0;
    if (this.pendingCR) {
      this.pendingCR = false;
      if (chunk[0] === LF)
        start = 1; // the LF of a CRLF split across chunks
      else if (this.pendingCRInHeader) this.bareLineEnding();
    }
    while (start <= chunk.length && !this.rejection) {
      if (!this.inHeader) {
        this.body(chunk, start);
        break;
      }
      const end = nextLineEnd(chunk, start);
      if (end === -1) {
        if (start < chunk.length) this.content(chunk.subarray(start));
        break;
      }
      const bare = chunk[end] === LF || (end + 1 < chunk.length && chunk[end + 1] !== LF);
      if (bare && this.inHeader) {
        this.bareLineEnding();
        break;
      }
      const inHeader = this.inHeader;
      this.content(chunk.subarray(start, end));
      this.endLine();
      if (chunk[end] === CR) {
        if (end + 1 === chunk.length) {
          // A CR ends the chunk: only the next one tells a CRLF from a bare CR.
          this.pendingCR = true;
          this.pendingCRInHeader = inHeader;
          start = end + 1;
          break;
        }
        start = chunk[end + 1] === LF ? end + 2 : end + 1;
      } else {
        start = end + 1;
      }
    }
    this.flushPending();
    done();
  }

  override _flush(done: TransformCallback): void {
    if (this.rejection) return done();
    if (this.pendingCR && this.pendingCRInHeader) {
      this.bareLineEnding();
      return done();
    }
    if (this.lineBytes > 0 || this.currentLine.length > 0) this.endLine();
    if (this.inHeader) this.finishHeader();
    this.flushPending();
    done();
  }

  /**
   * The body from `from` to the chunk's end: the same rules as a header line
   * (every line within maxLineBytes, every bare CR or LF made CRLF), but the
   * bytes between two changes pass on as one slice of the input, not line by
   * line: a clean body is one slice per chunk and one socket write, with no
   * copy (per-line slices and their concatenation were most of the filter's
   * cost and a good part of the garbage per message).
   */
  private body(chunk: Buffer, from: number): void {
    const max = this.options.maxLineBytes;
    // Input from `run` on goes out as it is.
    let run = from;
    let start = from;
    for (;;) {
      const end = nextLineEnd(chunk, start);
      this.lineBytes += (end === -1 ? chunk.length : end) - start;
      if (this.lineBytes + 2 > max) {
        this.reject("LineTooLong", 552, `5.6.0 A line exceeds ${max} bytes`);
        return;
      }
      if (end === -1) break;
      this.lineBytes = 0;
      if (chunk[end] === CR && end + 1 < chunk.length && chunk[end + 1] === LF) {
        start = end + 2;
        continue;
      }
      // A bare LF or CR, or a CR that ends the chunk (only the next one tells a CRLF from a bare CR): CRLF for it.
      if (run < end) this.output(chunk.subarray(run, end));
      this.output(CRLF);
      start = run = end + 1;
      if (chunk[end] === CR && end + 1 === chunk.length) {
        this.pendingCR = true;
        this.pendingCRInHeader = false;
        return;
      }
    }
    if (run < chunk.length) this.output(chunk.subarray(run));
  }

  private output(bytes: Buffer): void {
    this.pending.push(bytes);
  }

  private flushPending(): void {
    if (this.pending.length === 0 || this.rejection) {
      this.pending = [];
      return;
    }
    this.push(this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending));
    this.pending = [];
  }

  private content(bytes: Buffer): void {
    this.lineBytes += bytes.length;
    if (this.lineBytes + 2 > this.options.maxLineBytes) {
      this.reject("LineTooLong", 552, `5.6.0 A line exceeds ${this.options.maxLineBytes} bytes`);
      return;
    }
    if (this.inHeader) this.currentLine.push(bytes);
    else this.output(bytes);
  }

  private endLine(): void {
    if (this.rejection) return;
    if (!this.inHeader) {
      this.output(CRLF);
      this.lineBytes = 0;
      return;
    }
    const line = Buffer.concat(this.currentLine);
    this.currentLine = [];
    this.lineBytes = 0;
    if (line.length === 0) {
      this.finishHeader();
      this.output(CRLF);
      return;
    }
    this.headerBytes += line.length + 2;
    if (this.headerBytes > this.options.maxHeaderBytes) {
      this.reject("HeaderTooLarge", 552, `5.6.0 The header section exceeds ${this.options.maxHeaderBytes} bytes`);
      return;
    }
    const continuation = line[0] === 0x20 || line[0] === 0x09;
    if (continuation ? this.headerLines.length === 0 : !startsField(line)) {
      // Not a header field (nor the continuation of one): the body starts here,
      // without the empty line. Readers differ on such a line (mailauth and
      // some mail readers append it to the field above and read on), so the
      // empty line goes in first: a forged field after it is body for all of them.
      this.finishHeader();
      this.output(CRLF);
      this.output(line);
      this.output(CRLF);
      return;
    }
    this.headerLines.push(line);
  }

  private finishHeader(): void {
    if (!this.inHeader) return;
    this.inHeader = false;
    let received = 0;
    const kept: Buffer[] = [];
    const arrived: { name: string; raw: Buffer }[] = [];
    for (const field of fields(this.headerLines)) {
      const name = fieldName(field);
      if (this.options.recordArrived) arrived.push({ name, raw: Buffer.concat(field.flatMap((line) => [line, CRLF])) });
      if (name === "received") received++;
      if (name === verificationHeader) this.verificationToken = tokenOf(field);
      if (!this.options.preserveHeaders) {
        if (name.startsWith(ownHeaderPrefix)) continue;
        if (name === "authentication-results" && claimsAuthservId(field, this.options.authservId)) continue;
      }
      kept.push(...field);
    }
    this.headerLines = [];
    if (received >= this.options.maxReceivedHops) {
      this.reject("TooManyHops", 554, `5.4.6 Too many Received headers (${received}): mail loop`);
      return;
    }
    if (this.options.recordArrived) this.arrivedFields = arrived;
    const prepend = Buffer.from(this.options.prepend, "utf8");
    this.output(prepend);
    this.outputHeaderBytes = prepend.length;
    for (const line of kept) {
      this.output(line);
      this.output(CRLF);
      this.outputHeaderBytes += line.length + 2;
    }
  }

  private bareLineEnding(): void {
    this.reject("BareLineEnding", 554, "5.6.0 Bare CR or LF in the header section: header lines must end in CRLF (RFC 5322 section 2.2)");
  }

  private reject(rejection: FilterRejection, code: number, message: string): void {
    this.rejection ??= new MessageRejected(rejection, code, message);
    this.headerLines = [];
    this.currentLine = [];
  }
}

function nextLineEnd(chunk: Buffer, from: number): number {
  const cr = chunk.indexOf(CR, from);
  const lf = chunk.indexOf(LF, from);
  if (cr === -1) return lf;
  if (lf === -1) return cr;
  return Math.min(cr, lf);
}

/** Groups header lines into fields (a field is its first line plus continuations). */
function* fields(lines: Buffer[]): Generator<Buffer[]> {
  let field: Buffer[] = [];
  for (const line of lines) {
    const continuation = line[0] === 0x20 || line[0] === 0x09;
    if (!continuation && field.length > 0) {
      yield field;
      field = [];
    }
    field.push(line);
  }
  if (field.length > 0) yield field;
}

function fieldName(field: Buffer[]): string {
  const first = field[0]!;
  const colon = first.indexOf(0x3a);
  return first.subarray(0, colon).toString("latin1").trim().toLowerCase();
}

/**
 * Whether a header line opens a field: an RFC 5322 field-name (printable
 * US-ASCII but ":"), optional WSP (the obsolete syntax of section 4.5.8), ":".
 */
function startsField(line: Buffer): boolean {
  let i = 0;
  while (i < line.length && line[i]! >= 0x21 && line[i]! <= 0x7e && line[i] !== 0x3a) i++;
  if (i === 0) return false;
  while (line[i] === 0x20 || line[i] === 0x09) i++;
  return line[i] === 0x3a;
}

/**
 * Whether an Authentication-Results field (its lines) could be read as
 * carrying our authserv-id. Any reading a reader makes counts: the RFC 8601
 * grammar, mailauth's, the field decoded as UTF-8 or as Latin-1, with or
 * without a trailing dot. Removing a field that was not ours costs nothing
 * (RFC 8601 section 5 lets an MTA remove any); keeping a forged one hands
 * out the trust tag.
 */
export function claimsAuthservId(field: Buffer[], authservId: string): boolean {
  const ours = authservId.toLowerCase().replace(/\.$/, "");
  const raw = Buffer.concat(field);
  for (const encoding of ["utf8", "latin1"] as const) {
    const text = raw.toString(encoding);
    const value = text.slice(text.indexOf(":") + 1);
    if (authservIdReadings(value).some((id) => id.replace(/\.$/, "") === ours)) return true;
    if (mentionsId(value, ours)) return true;
  }
  return false;
}

/**
 * The catch-all behind the readings: our id as a word of its own where an id
 * can stand, once every backslash, quote and comment is dropped. A reader that
 * unescapes before it parses (mailauth reads `\"relay.test\"` as a quoted
 * id) finds no spelling of our id that this misses; another server's field
 * that names us only in a comment or as a property value is kept.
 */
function mentionsId(value: string, ours: string): boolean {
  let plain = value.toLowerCase().replace(/\\/g, "").replace(/"/g, "");
  // Comments nest: drop innermost ones until none is left (bounded by the field's length).
  for (let previous = ""; previous !== plain;) {
    previous = plain;
    plain = plain.replace(/\([^()]*\)/g, "");
  }
  // Where an id can stand: the first part, and any part that is no "property=value" (mailauth's reading).
  return plain.split(";").some((part, index) => (index === 0 || !part.includes("=")) && hasWord(part, ours));
}

function hasWord(text: string, word: string): boolean {
  const wordChar = /[a-z0-9.-]/;
  for (let at = text.indexOf(word); at >= 0; at = text.indexOf(word, at + 1)) {
    const before = text[at - 1];
    const after = text.slice(at + word.length).replace(/^\.(?![a-z0-9-])/, "")[0];
    if (!(before && wordChar.test(before)) && !(after && wordChar.test(after))) return true;
  }
  return false;
}

/**
 * The authserv-ids readers take from an Authentication-Results value
 * (unfolded, after the colon), lowercased:
 * - RFC 8601 section 2.2: after optional CFWS, a token or a quoted-string (its
 *   quoted-pairs decoded), then optional CFWS and a version; comments nest and
 *   hold quoted-pairs (RFC 5322 section 3.2.2), and separate words;
 * - mailauth: the first ";"-separated part without "=", wherever it is, with
 *   comments cut out so the text on either side joins up.
 */
export function authservIdReadings(value: string): string[] {
  const readings = new Set<string>();
  resinfoParts(value).forEach((part, index) => {
    for (const text of [part.spaced, part.joined]) {
      const words = text.trim().split(/\s+/);
      if (index === 0) {
        readings.add(words[0]!);
        // A strict RFC 2045 tokenizer ends the token at the first tspecial.
        readings.add(words[0]!.split(/[()<>@,;:\\"/[\]?=]/, 1)[0]!);
      }
      if (!text.includes("=")) readings.add(words.join(" "));
    }
  });
  return [...readings].filter((id) => id !== "").map((id) => id.toLowerCase());
}

/**
 * An Authentication-Results value split at the ";" outside comments and
 * quoted-strings, each part with its quoted-strings decoded and its comments
 * replaced by a space (`spaced`) or by nothing (`joined`).
 */
function resinfoParts(value: string): { spaced: string; joined: string }[] {
  const parts: { spaced: string; joined: string }[] = [];
  let spaced = "";
  let joined = "";
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === "\\" && i + 1 < value.length) {
      // A quoted-pair: comment text inside a comment, the character itself elsewhere.
      i++;
      if (depth === 0) {
        spaced += value[i];
        joined += value[i];
      }
    } else if (depth > 0) {
      if (c === "(") depth++;
      else if (c === ")") depth--;
    } else if (quoted) {
      if (c === '"') quoted = false;
      else {
        spaced += c;
        joined += c;
      }
    } else if (c === '"') {
      quoted = true;
    } else if (c === "(") {
      depth = 1;
      spaced += " ";
    } else if (c === ";") {
      parts.push({ spaced, joined });
      spaced = "";
      joined = "";
    } else {
      spaced += c;
      joined += c;
    }
  }
  parts.push({ spaced, joined });
  return parts;
}
