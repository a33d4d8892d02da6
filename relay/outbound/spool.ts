// Holds one outbound message while it is signed: DKIM puts the signature, which
// needs the hash of the whole body, in front of the message. The header section
// stays in memory (the message filter bounds it); the body is hashed as it
// arrives and kept in memory up to a threshold, then in a temporary file, so
// a large message costs a file, not memory.
import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, rm, type FileHandle } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable, Writable } from "node:stream";
import { SmtpReply } from "../forward/cut-through.js";
import { RelaxedBodyHash, headerFields, type HeaderField } from "./dkim.js";

const endOfHeader = Buffer.from("\r\n\r\n");

/**
 * The disk all of a relay's spools may use at once. A message that would take more is refused with a temporary
 * error (Postfix's "452 4.3.1 Insufficient system storage"): the sender's queue keeps it and tries again, where a
 * full /tmp would have the pod evicted with every session in it.
 */
export class SpoolBudget {
  private used = 0;

  constructor(private limit: number) {}

  /** A new limit from a config reload; what is in use stays in use. */
  setLimit(limit: number): void {
    this.limit = limit;
  }

  reserve(bytes: number): boolean {
    if (this.used + bytes > this.limit) return false;
    this.used += bytes;
    return true;
  }

  release(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }

  get inUse(): number {
    return this.used;
  }

  /** What a reservation could take now. */
  get available(): number {
    return Math.max(0, this.limit - this.used);
  }
}

export interface SpoolOptions {
  /** Bytes kept in memory before the spool moves to a file. */
  memoryBytes: number;
  /** The disk this spool's file draws on; unbounded without one. */
  budget?: SpoolBudget;
  directory?: string;
}

const storageFull = () => new SmtpReply(452, "4.3.1 Insufficient system storage for this message now, try again later");

export class SigningSpool extends Writable {
  readonly bodyHash = new RelaxedBodyHash();
  private header: Buffer | undefined = Buffer.alloc(0);
  private headerSection = "";
  private memory: Buffer[] = [];
  private memoryBytes = 0;
  private file: { path: string; handle: FileHandle } | undefined;
  /** Bytes of the file reserved from the budget, given back on dispose. */
  private reserved = 0;

  constructor(private readonly options: SpoolOptions) {
    super();
  }

  /** The header fields, once the spool has finished. */
  fields(): HeaderField[] {
    return headerFields(this.headerSection);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.scan(chunk);
    if (this.file) {
      if (!this.reserve(chunk.length)) return done(storageFull());
      this.file.handle.write(chunk).then(() => done(), done);
      return;
    }
    this.memory.push(chunk);
    this.memoryBytes += chunk.length;
    if (this.memoryBytes <= this.options.memoryBytes) return done();
    if (!this.reserve(this.memoryBytes)) return done(storageFull());
    const path = join(this.options.directory ?? tmpdir(), `smtpc-spool-${randomBytes(12).toString("hex")}`);
    open(path, "wx", 0o600).then(
      async (handle) => {
        this.file = { path, handle };
        await handle.writev(this.memory);
        this.memory = [];
        this.memoryBytes = 0;
        done();
      },
      (error: Error) => done(error),
    );
  }

  override _final(done: (error?: Error | null) => void): void {
    if (this.header !== undefined) {
      // No empty line: the whole message is header, the body is empty.
      this.headerSection = this.header.toString("latin1");
      this.header = undefined;
    }
    if (this.file) this.file.handle.close().then(() => done(), done);
    else done();
  }

  /** The signature fields followed by the message, as one stream. */
  replay(prefix: string): Readable {
    const head = Buffer.from(prefix, "latin1");
    // One buffer: the next hop's writer handles one chunk more cheaply than many.
    if (!this.file) return Readable.from([Buffer.concat([head, ...this.memory])]);
    const file = createReadStream(this.file.path, { highWaterMark: 64 * 1024 });
    return Readable.from(
      (async function* () {
        yield head;
        for await (const chunk of file) yield chunk as Buffer;
      })(),
    );
  }

  /** Removes the temporary file, if any. */
  async dispose(): Promise<void> {
    this.memory = [];
    if (this.file) {
      await this.file.handle.close().catch(() => undefined);
      await rm(this.file.path, { force: true });
    }
    this.options.budget?.release(this.reserved);
    this.reserved = 0;
  }

  private reserve(bytes: number): boolean {
    if (this.options.budget && !this.options.budget.reserve(bytes)) return false;
    this.reserved += bytes;
    return true;
  }

  // Writables destroy themselves after finishing (autoDestroy): the content
  // must outlive that, until replay() was read and dispose() called. Only a
  // failed spool cleans up here.
  override _destroy(error: Error | null, done: (error?: Error | null) => void): void {
    if (!error) return done(null);
    this.dispose().then(
      () => done(error),
      () => done(error),
    );
  }

  private scan(chunk: Buffer): void {
    if (this.header === undefined) {
      this.bodyHash.update(chunk);
      return;
    }
    const previous = this.header.length;
    this.header = Buffer.concat([this.header, chunk]);
    // A message may start with its empty line (no header fields at all).
    const end = this.header.subarray(0, 2).equals(endOfHeader.subarray(0, 2))
      ? 0
      : this.header.indexOf(endOfHeader, Math.max(0, previous - 3));
    if (end === -1) return;
    const split = end === 0 ? 0 : end + 2;
    this.headerSection = this.header.subarray(0, split).toString("latin1");
    const body = this.header.subarray(split + 2);
    this.header = undefined;
    if (body.length > 0) this.bodyHash.update(body);
  }
}
