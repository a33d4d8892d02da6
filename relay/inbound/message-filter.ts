// The message as it streams from the sender to the next hop. One pass, bounded
// memory (the header section at most), and every rule about the content:
//
// - line endings: every bare CR and bare LF becomes CRLF, so no line-ending
//   variant can end the message early at the next hop (SMTP smuggling);
// - limits: total size, line length, header section size, Received hops;
// - trust: Authentication-Results claiming our authserv-id and our own
//   X-SmtpConnector-* headers are removed; ours are prepended.
//
// A violation stops the output (the caller then aborts the next-hop
// transaction, so no truncated message is ever accepted) while the caller
// keeps draining the input.
import { Transform, type TransformCallback } from "node:stream";

export type FilterRejection = "TooBig" | "LineTooLong" | "HeaderTooLarge" | "TooManyHops";

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
}

const CR = 0x0d;
const LF = 0x0a;
const CRLF = Buffer.from("\r\n");
const ownHeaderPrefix = "x-smtpconnector-";
const verificationHeader = "x-smtpconnector-verification";
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
  private lineBytes = 0;
  private pendingCR = false;
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
      if (chunk[0] === LF) start = 1; // the LF of a CRLF split across chunks
    }
    while (start <= chunk.length && !this.rejection) {
      const end = nextLineEnd(chunk, start);
      if (end === -1) {
        if (start < chunk.length) this.content(chunk.subarray(start));
        break;
      }
      this.content(chunk.subarray(start, end));
      this.endLine();
      if (chunk[end] === CR) {
        if (end + 1 === chunk.length) {
          this.pendingCR = true;
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
    if (this.lineBytes > 0 || this.currentLine.length > 0) this.endLine();
    if (this.inHeader) this.finishHeader();
    this.flushPending();
    done();
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
    if (!continuation && line.indexOf(0x3a) <= 0) {
      // Not a header field: the body starts without a blank line.
      this.finishHeader();
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
    for (const field of fields(this.headerLines)) {
      const name = fieldName(field);
      if (name === "received") received++;
      if (name === verificationHeader) this.verificationToken = tokenOf(field);
      if (!this.options.preserveHeaders) {
        if (name.startsWith(ownHeaderPrefix)) continue;
        if (name === "authentication-results" && authservIdOf(field) === this.options.authservId.toLowerCase()) continue;
      }
      kept.push(...field);
    }
    this.headerLines = [];
    if (received >= this.options.maxReceivedHops) {
      this.reject("TooManyHops", 554, `5.4.6 Too many Received headers (${received}): mail loop`);
      return;
    }
    this.output(Buffer.from(this.options.prepend, "utf8"));
    for (const line of kept) {
      this.output(line);
      this.output(CRLF);
    }
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

/** The authserv-id of an Authentication-Results field (RFC 8601 section 2.2), lowercased. */
export function authservIdOf(field: Buffer[]): string {
  const value = field.map((l) => l.toString("latin1")).join(" ");
  const afterName = value.slice(value.indexOf(":") + 1);
  const withoutComments = afterName.replace(/\([^)]*\)/g, " ");
  const id = withoutComments.trim().split(/[\s;]/, 1)[0] ?? "";
  return id.toLowerCase();
}
