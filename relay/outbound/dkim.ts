// DKIM signing (RFC 6376, relaxed/relaxed; RFC 8463 for Ed25519), written for
// a relay: the body hash is computed while the message streams through, the
// header section is the only part held in memory, and one message can carry
// an RSA and an Ed25519 signature side by side.
import { createHash, createPrivateKey, sign, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import type { DkimKey } from "../contract/config.js";

export interface SigningKey {
  domain: string;
  selector: string;
  algorithm: DkimKey["algorithm"];
  key: KeyObject;
}

export class DkimKeyError extends Error {}

/** Loads a key file and checks it is the kind of key the algorithm says. */
export function loadSigningKey(domain: string, entry: DkimKey): SigningKey {
  let key: KeyObject;
  try {
    key = createPrivateKey(readFileSync(entry.keyFile));
  } catch (error) {
    throw new DkimKeyError(
      `DKIM key ${entry.selector} for ${domain}: cannot read a private key from ${entry.keyFile}: ${(error as Error).message}`,
    );
  }
  const type = key.asymmetricKeyType;
  if (entry.algorithm === "rsa-sha256") {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (type !== "rsa")
      throw new DkimKeyError(`DKIM key ${entry.selector} for ${domain}: rsa-sha256 needs an RSA key, ${entry.keyFile} holds ${type}`);
    if (bits < 1024)
      throw new DkimKeyError(
        `DKIM key ${entry.selector} for ${domain}: RSA keys shorter than 1024 bits are not accepted (RFC 8301), this one has ${bits}`,
      );
  } else if (type !== "ed25519") {
    throw new DkimKeyError(`DKIM key ${entry.selector} for ${domain}: ed25519-sha256 needs an Ed25519 key, ${entry.keyFile} holds ${type}`);
  }
  return { domain, selector: entry.selector, algorithm: entry.algorithm, key };
}

// Fields that relays add or rewrite on the way: signing them would break the
// signature downstream without protecting anything.
const unsigned = new Set([
  "received",
  "return-path",
  "dkim-signature",
  "authentication-results",
  "arc-seal",
  "arc-message-signature",
  "arc-authentication-results",
  "delivered-to",
  "x-original-to",
  "bcc",
]);
// Signed once more than they occur, so nobody can add another instance later.
// The verification token's field too: otherwise anyone holding any message
// the relay signed for a domain could add a token to it and have it arrive,
// DKIM-aligned, on the forwarded listener (docs/security.md).
const overSigned = [
  "from",
  "to",
  "cc",
  "subject",
  "date",
  "message-id",
  "reply-to",
  "references",
  "in-reply-to",
  "mime-version",
  "content-type",
  "x-smtpconnector-verification",
];
const maxSignedFields = 100;

const SP = 0x20;
const TAB = 0x09;
const CR = 0x0d;
const LF = 0x0a;
const CRLF = Buffer.from("\r\n");

/** The relaxed body hash (RFC 6376 §3.4.4), fed the body as it streams (CRLF line endings). */
export class RelaxedBodyHash {
  private readonly hash = createHash("sha256");
  private partial: Buffer[] = [];
  private emptyLines = 0;

  update(chunk: Buffer): void {
    // The common case, decided by native searches: no partial line pending,
    // no empty line, nothing to fold. Everything up to the last LF is
    // already canonical and goes into the hash in one piece.
    if (this.partial.length === 0 && this.emptyLines === 0 && !(chunk[0] === CR && chunk[1] === LF) && alreadyCanonical(chunk)) {
      const last = chunk.lastIndexOf(LF);
      if (last !== -1) this.hash.update(chunk.subarray(0, last + 1));
      if (last + 1 < chunk.length) this.partial.push(chunk.subarray(last + 1));
      return;
    }
    let start = 0;
    // Lines that are already canonical (non-empty, CRLF-terminated, no
    // whitespace to fold) go into the hash as one run, not line by line.
    let run = -1;
    const flush = (end: number) => {
      if (run !== -1 && end > run) this.hash.update(chunk.subarray(run, end));
      run = -1;
    };
    for (;;) {
      const lf = chunk.indexOf(LF, start);
      if (lf === -1) {
        flush(start);
        if (start < chunk.length) this.partial.push(chunk.subarray(start));
        return;
      }
      if (this.partial.length > 0) {
        const line = Buffer.concat([...this.partial, chunk.subarray(start, lf)]);
        this.partial = [];
        this.line(line.length > 0 && line[line.length - 1] === CR ? line.subarray(0, line.length - 1) : line);
      } else if (lf > start && chunk[lf - 1] === CR && lf - 1 > start && this.emptyLines === 0 && isCanonical(chunk, start, lf - 1)) {
        if (run === -1) run = start;
      } else {
        flush(start);
        this.line(chunk.subarray(start, lf > start && chunk[lf - 1] === CR ? lf - 1 : lf));
      }
      start = lf + 1;
    }
  }

  /** Base64 of the hash; a last line without CRLF counts as a line. */
  digest(): string {
    if (this.partial.length > 0) this.line(Buffer.concat(this.partial));
    this.partial = [];
    return this.hash.digest("base64");
  }

  private line(raw: Buffer): void {
    const line = relaxLine(raw);
    if (line.length === 0) {
      // Empty lines count only if something follows them.
      this.emptyLines++;
      return;
    }
    for (; this.emptyLines > 0; this.emptyLines--) this.hash.update(CRLF);
    this.hash.update(line);
    this.hash.update(CRLF);
  }
}

/** Whether a chunk of CRLF lines has no whitespace to fold and no empty line (a partial last line is checked later). */
function alreadyCanonical(chunk: Buffer): boolean {
  return chunk.indexOf(TAB) === -1 && chunk.indexOf("  ") === -1 && chunk.indexOf(" \r") === -1 && chunk.indexOf("\r\n\r\n") === -1;
}

/** Whether bytes [from, to) are a line relaxed canonicalization leaves as it is. */
function isCanonical(bytes: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = bytes[i];
    if (c === TAB || (c === SP && (i + 1 === to || bytes[i + 1] === SP || bytes[i + 1] === TAB))) return false;
  }
  return true;
}

/** Collapses runs of SP/HTAB to one SP and drops trailing whitespace. */
function relaxLine(line: Buffer): Buffer {
  if (isCanonical(line, 0, line.length)) return line;
  return Buffer.from(
    line
      .toString("latin1")
      .replace(/[ \t]+/g, " ")
      .replace(/ $/, ""),
    "latin1",
  );
}

export interface HeaderField {
  /** Lowercased field name. */
  name: string;
  /** The whole field as it appeared, continuation lines included, without the final CRLF. */
  raw: string;
}

/** Splits a header section (latin1, CRLF line endings) into its fields. */
export function headerFields(section: string): HeaderField[] {
  const fields: HeaderField[] = [];
  for (const line of section.split("\r\n")) {
    if (line.length === 0) continue;
    const last = fields[fields.length - 1];
    if ((line[0] === " " || line[0] === "\t") && last) {
      last.raw += `\r\n${line}`;
      continue;
    }
    const colon = line.indexOf(":");
    fields.push({ name: (colon > 0 ? line.slice(0, colon) : line).trim().toLowerCase(), raw: line });
  }
  return fields;
}

/** Relaxed header canonicalization (RFC 6376 §3.4.2) of one field, with CRLF. */
export function relaxHeader(raw: string): string {
  const colon = raw.indexOf(":");
  const name = raw.slice(0, colon).trim().toLowerCase();
  const value = raw
    .slice(colon + 1)
    .replace(/\r\n/g, "")
    .replace(/[ \t]+/g, " ")
    .trim();
  return `${name}:${value}\r\n`;
}

/** Which fields a signature covers, in h= order, with over-signing. */
export function signedFieldNames(fields: readonly HeaderField[]): string[] {
  const names: string[] = [];
  for (const field of fields) {
    if (!unsigned.has(field.name) && /^[!-9;-~]+$/.test(field.name) && names.length < maxSignedFields) names.push(field.name);
  }
  for (const name of overSigned) names.push(name);
  return names;
}

/**
 * The DKIM-Signature fields (each ending in CRLF) for a message with the given
 * header section and body hash, one per key.
 */
export function signatures(keys: readonly SigningKey[], fields: readonly HeaderField[], bodyHash: string, now = new Date()): string {
  if (keys.length === 0) return "";
  const names = signedFieldNames(fields);
  // Instances are taken from the bottom up (RFC 6376 §5.4.2); a name listed
  // more often than it occurs contributes nothing, which is what over-signing means.
  const remaining = new Map<string, HeaderField[]>();
  for (const field of fields) remaining.set(field.name, [...(remaining.get(field.name) ?? []), field]);
  let signedData = "";
  for (const name of names) {
    const instance = remaining.get(name)?.pop();
    if (instance) signedData += relaxHeader(instance.raw);
  }
  const t = Math.floor(now.getTime() / 1000);
  let out = "";
  for (const key of keys) {
    const unsignedField = [
      `DKIM-Signature: v=1; a=${key.algorithm}; c=relaxed/relaxed; d=${key.domain};`,
      ` s=${key.selector}; t=${t};`,
      ` h=${fold(names.join(":"), ":")};`,
      ` bh=${bodyHash};`,
      " b=",
    ].join("\r\n");
    const data = Buffer.from(signedData + relaxHeader(unsignedField).slice(0, -2), "latin1");
    const signature =
      key.algorithm === "rsa-sha256" ? sign("sha256", data, key.key) : sign(null, createHash("sha256").update(data).digest(), key.key);
    out += `${unsignedField}${fold(signature.toString("base64"))}\r\n`;
  }
  return out;
}

/** Folds a long tag value: at separators when given, otherwise every 72 characters. */
function fold(value: string, separator?: string): string {
  const width = 72;
  if (separator === undefined) {
    const parts: string[] = [];
    for (let i = 0; i < value.length; i += width) parts.push(value.slice(i, i + width));
    return parts.join("\r\n ");
  }
  const lines: string[] = [];
  let line = "";
  for (const part of value.split(separator)) {
    if (line.length > 0 && line.length + part.length + 1 > width) {
      lines.push(`${line}${separator}`);
      line = part;
    } else {
      line = line.length > 0 ? `${line}${separator}${part}` : part;
    }
  }
  lines.push(line);
  return lines.join("\r\n ");
}
