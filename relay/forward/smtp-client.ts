// One SMTP or LMTP client connection to a next hop, written for the relay's
// hot path (ADR 0008): the envelope goes out as one pipelined write when the
// server offers PIPELINING, the message is written as the filter emits it with
// dot-stuffing done in place (native indexOf; most chunks are written as they
// are), and the final dot goes out with the last chunk. No stream sits
// between the message and the socket.
//
// The message must arrive with CRLF line endings only — the MessageFilter's
// output. Where the trust level changes (STARTTLS) nothing read before it is
// kept: any byte after the 220 answer fails the session. A connection that
// saw any failure is destroyed and never reused: a failure while the message
// is being written closes the socket before the final dot, so the next hop
// discards the partial message.
import net from "node:net";
import type { Readable } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import tls from "node:tls";
import { batchWrites } from "../write-batching.js";
import { NextHopError } from "../contract/failures.js";

export interface SmtpClientOptions {
  host: string;
  port: number;
  lmtp: boolean;
  tls: "None" | "StartTLS" | "Implicit";
  /** PEM CA bundle instead of the system roots. */
  ca?: string;
  /** Name we announce in EHLO/LHLO. */
  clientName: string;
  /** Connect, greeting and per-reply timeout. */
  timeoutMs: number;
  auth?: { username: string; password: string };
  /** A TLS session an earlier connection to this same next hop was given, to resume (SmtpNextHop keeps them). */
  session?: Buffer;
  /**
   * Each TLS session the next hop gives this connection, once its certificate
   * was verified; `resumed`: this connection's handshake resumed the offered
   * session (its certificate was checked when that session was made, not now).
   */
  onSession?: (session: Buffer, resumed: boolean) => void;
}

export interface Reply {
  code: number;
  /** The reply as the server wrote it, lines joined by a space. */
  text: string;
  /** Each line's text after the code. */
  lines: string[];
}

type Waiter = { resolve: (reply: Reply) => void; reject: (error: Error) => void };

const dotLine = Buffer.from("\n.");
const finalDot = Buffer.from(".\r\n");
const crlfFinalDot = Buffer.from("\r\n.\r\n");

export class SmtpClient {
  /** Messages this connection carried (the pool retires it after a number). */
  messages = 0;
  private socket: net.Socket;
  /** Keeps a UTF-8 character split across reads whole (replies may carry UTF-8, RFC 6531 section 3.7.4). */
  private decoder = new StringDecoder("utf8");
  private partial = "";
  private replyLines: string[] = [];
  private readonly replies: Reply[] = [];
  private readonly waiters: Waiter[] = [];
  /** Set once the connection failed or closed; every later wait rejects with it. */
  private failure: Error | undefined;
  private extensions = new Set<string>();
  private authMechanisms = new Set<string>();
  /** Answers due to what we sent (the greeting first): a reply beyond them is unprompted. */
  private awaited = 1;
  /** The command whose reply is awaited: what a failure names (classifyFailure reads it). */
  private command = "CONNECT";

  private constructor(private readonly options: SmtpClientOptions) {
    this.socket = this.attach(
      options.tls === "Implicit" ? this.connectTls({ port: options.port }) : net.connect({ host: options.host, port: options.port }),
    );
  }

  /** Connects, reads the greeting, says EHLO/LHLO, upgrades to TLS and logs in as the options ask. */
  static async open(options: SmtpClientOptions, signal?: AbortSignal): Promise<SmtpClient> {
    const client = new SmtpClient(options);
    const onAbort = () => client.destroy(abortReason(signal));
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      if (signal?.aborted) throw abortReason(signal);
      if (options.tls === "Implicit") await client.secured(client.socket as tls.TLSSocket);
      client.expect(await client.reply(), 220, "ECONNECTION");
      await client.hello();
      if (options.tls === "StartTLS") await client.startTls();
      if (options.auth) await client.login(options.auth);
      return client;
    } catch (error) {
      client.destroy();
      throw error;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Whether the connection can carry another message. */
  get usable(): boolean {
    return this.failure === undefined && !this.socket.destroyed;
  }

  /**
   * One transaction: MAIL, RCPT for each recipient, DATA, the message, the
   * final dot. Resolves with the next hop's final reply once it accepted the
   * message for every recipient; any refusal rejects (the sender then
   * retries the whole message, so no recipient is lost). `smtpUtf8`: the
   * sender asked for SMTPUTF8, which goes on when the next hop offers it.
   */
  async send(
    from: string,
    to: string[],
    message: Readable,
    signal?: AbortSignal,
    { smtpUtf8 = false }: { smtpUtf8?: boolean } = {},
  ): Promise<Reply> {
    for (const address of [from, ...to]) {
      if (/[\r\n<>]/.test(address))
        throw new NextHopError(`invalid envelope address ${JSON.stringify(address)}`, undefined, "Message", { code: "EENVELOPE" });
    }
    const onAbort = () => this.destroy(abortReason(signal));
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      if (signal?.aborted) throw abortReason(signal);
      // Closed since its last message (the pool checks first; this is the race):
      // the transaction fails at its first command, nothing of it sent.
      if (this.failure)
        throw new NextHopError("the next hop closed the connection", undefined, "Connection", {
          code: "ECONNECTION",
          command: "MAIL FROM",
        });
      this.refuseUnlessSmtpUtf8(from, to);
      await this.envelope(from, to, smtpUtf8);
      this.command = "DATA";
      await this.writeMessage(message, to.length);
      const replies: Reply[] = [];
      for (let i = 0; i < (this.options.lmtp ? to.length : 1); i++) replies.push(this.expect(await this.reply(), 250, "EMESSAGE"));
      this.messages++;
      return replies[replies.length - 1]!;
    } catch (error) {
      this.destroy();
      throw error;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Says QUIT and closes; replies after it do not matter. */
  quit(): void {
    if (!this.usable) return this.destroy();
    this.failure = new NextHopError("connection closed", undefined, "Connection");
    this.socket.end("QUIT\r\n");
    setTimeout(() => this.socket.destroy(), 1_000).unref();
  }

  destroy(error?: Error): void {
    this.fail(error ?? new NextHopError("connection closed", undefined, "Connection"));
    this.socket.destroy();
  }

  /**
   * RFC 6531 section 3.2: a non-ASCII address must not go to a server that
   * does not offer SMTPUTF8; a relay (not a submission agent that rewrites
   * the message) should refuse it, with the codes of section 3.5: 550 5.6.7
   * for the sender, 553 5.6.7 for a recipient.
   */
  private refuseUnlessSmtpUtf8(from: string, to: string[]): void {
    if (this.extensions.has("SMTPUTF8")) return;
    const sender = nonAscii(from);
    if (!sender && !to.some(nonAscii)) return;
    this.command = sender ? "MAIL FROM" : "RCPT TO";
    throw new NextHopError(
      sender
        ? "5.6.7 Non-ASCII sender address not permitted: the next hop does not support SMTPUTF8"
        : "5.6.7 Non-ASCII recipient address not permitted: the next hop does not support SMTPUTF8",
      sender ? 550 : 553,
      "Reply",
      { code: "ESMTPUTF8", command: this.command },
    );
  }

  private async envelope(from: string, to: string[], smtpUtf8: boolean): Promise<void> {
    this.command = "MAIL FROM";
    // A non-ASCII address needs the parameter (refuseUnlessSmtpUtf8 made sure it is offered).
    const utf8 = nonAscii(from) || to.some(nonAscii) || (smtpUtf8 && this.extensions.has("SMTPUTF8"));
    const params = [...(this.extensions.has("8BITMIME") ? [" BODY=8BITMIME"] : []), ...(utf8 ? [" SMTPUTF8"] : [])].join("");
    const commands = [`MAIL FROM:<${from}>${params}`, ...to.map((address) => `RCPT TO:<${address}>`), "DATA"];
    if (this.extensions.has("PIPELINING")) {
      this.write(`${commands.join("\r\n")}\r\n`, commands.length);
      const replies: Reply[] = [];
      for (const _ of commands) replies.push(await this.reply());
      commands.forEach((command, i) => this.checkEnvelopeReply(command, replies[i]!));
      return;
    }
    for (const command of commands) {
      this.write(`${command}\r\n`);
      this.checkEnvelopeReply(command, await this.reply());
    }
  }

  private checkEnvelopeReply(command: string, reply: Reply): void {
    this.command = command.startsWith("RCPT") ? "RCPT TO" : command.startsWith("MAIL") ? "MAIL FROM" : "DATA";
    this.expect(reply, command === "DATA" ? 354 : 250, command === "DATA" ? "EMESSAGE" : "EENVELOPE");
  }

  /** Writes the message as it arrives, then the final dot (with a CRLF before it if the message lacks one). */
  private writeMessage(message: Readable, recipients: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let lineStart = true;
      let last = [0x0d, 0x0a];
      const onData = (chunk: Buffer) => {
        if (chunk.length === 0) return;
        const stuffed = dotStuffed(chunk, lineStart);
        lineStart = chunk[chunk.length - 1] === 0x0a;
        last = chunk.length >= 2 ? [chunk[chunk.length - 2]!, chunk[chunk.length - 1]!] : [last[1]!, chunk[0]!];
        batchWrites(this.socket);
        if (!this.socket.write(stuffed)) {
          message.pause();
          this.socket.once("drain", () => message.resume());
        }
      };
      const cleanup = () => {
        message.off("data", onData);
        message.off("end", onEnd);
        message.off("error", onError);
        this.socket.off("close", onClose);
      };
      const onEnd = () => {
        cleanup();
        batchWrites(this.socket);
        this.socket.write(last[0] === 0x0d && last[1] === 0x0a ? finalDot : crlfFinalDot);
        // LMTP answers the final dot once per recipient (RFC 2033 section 4.2).
        this.awaited += this.options.lmtp ? recipients : 1;
        resolve();
      };
      const onError = (error: Error) => {
        cleanup();
        reject(new NextHopError(`message stream failed: ${error.message}`, undefined, "Message", { code: "ESTREAM", command: "DATA" }));
      };
      const onClose = () => {
        cleanup();
        reject(this.failure ?? new NextHopError("the next hop closed the connection", undefined, "Connection", { command: "DATA" }));
      };
      message.on("data", onData);
      message.once("end", onEnd);
      message.once("error", onError);
      this.socket.once("close", onClose);
      if (message.readableEnded) onEnd();
    });
  }

  private async hello(): Promise<void> {
    const verb = this.options.lmtp ? "LHLO" : "EHLO";
    this.command = verb;
    this.write(`${verb} ${this.options.clientName}\r\n`);
    const reply = await this.reply();
    this.extensions = new Set();
    this.authMechanisms = new Set();
    if (reply.code >= 500 && !this.options.lmtp) {
      // An SMTP server without ESMTP: no extensions, so no STARTTLS or AUTH either.
      this.command = "HELO";
      this.write(`HELO ${this.options.clientName}\r\n`);
      this.expect(await this.reply(), 250, "EPROTOCOL");
      return;
    }
    this.expect(reply, 250, "EPROTOCOL");
    for (const line of reply.lines.slice(1)) {
      const [keyword = "", ...args] = line.toUpperCase().split(/\s+/);
      this.extensions.add(keyword);
      if (keyword === "AUTH") for (const mechanism of args) this.authMechanisms.add(mechanism);
    }
  }

  private async startTls(): Promise<void> {
    if (!this.extensions.has("STARTTLS")) {
      throw new NextHopError("the next hop does not offer STARTTLS, which is required", undefined, "Connection", {
        code: "ETLS",
        command: "STARTTLS",
      });
    }
    this.command = "STARTTLS";
    this.write("STARTTLS\r\n");
    this.expect(await this.reply(), 220, "ETLS");
    // Bytes after the 220 came in plaintext, where anyone on the path can
    // write; kept, they would be read as the first answer inside TLS. Postfix
    // and nodemailer fail the session, and so does this.
    const early = this.partial + this.replyLines.join("\n") + this.replies.map((r) => r.text).join("\n") + this.decoder.end();
    if (this.failure) throw this.failure;
    if (early !== "" || this.socket.readableLength > 0) {
      throw new NextHopError(
        "the next hop sent data after its 220 answer to STARTTLS (possible command injection)",
        undefined,
        "Connection",
        { code: "ETLS", command: "STARTTLS" },
      );
    }
    this.partial = "";
    this.replyLines = [];
    this.replies.length = 0;
    this.decoder = new StringDecoder("utf8");
    const plain = this.socket;
    plain.removeAllListeners("data");
    plain.removeAllListeners("close");
    plain.removeAllListeners("error");
    plain.removeAllListeners("timeout");
    plain.setTimeout(0);
    // Errors on the plain socket now surface on the TLS socket wrapped around it.
    plain.on("error", () => undefined);
    const secure = this.connectTls({ socket: plain });
    this.socket = this.attach(secure);
    await this.secured(secure);
    await this.hello();
  }

  /**
   * A TLS connection that offers the session it was given and hands on the
   * ones it gets. Sessions are passed on only from secureConnect, which Node
   * emits only for a verified peer, so no session of an unverified server is
   * ever offered again (Node skips the name check on a resumed session). Node
   * 24 already withholds a session until then (TLS 1.2 has it before the
   * certificate is checked); this keeps it so if that changes.
   */
  private connectTls(extra: tls.ConnectionOptions): tls.TLSSocket {
    const socket = tls.connect({ ...tlsOptions(this.options), ...extra });
    const onSession = this.options.onSession;
    if (onSession) {
      let resumed: boolean | undefined;
      const early: Buffer[] = [];
      socket.on("session", (session: Buffer) => (resumed === undefined ? early.push(session) : onSession(session, resumed)));
      socket.once("secureConnect", () => {
        resumed = socket.isSessionReused();
        for (const session of early.splice(0)) onSession(session, resumed);
      });
    }
    return socket;
  }

  private secured(socket: tls.TLSSocket): Promise<void> {
    this.command = "TLS handshake";
    return new Promise<void>((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      const onClose = () =>
        reject(
          this.failure ??
            new NextHopError("the next hop closed the connection during the TLS handshake", undefined, "Connection", { code: "ETLS" }),
        );
      socket.once("close", onClose);
      socket.once("secureConnect", () => {
        socket.off("close", onClose);
        resolve();
      });
    });
  }

  private async login({ username, password }: { username: string; password: string }): Promise<void> {
    if (this.authMechanisms.has("PLAIN")) {
      this.command = "AUTH PLAIN";
      this.write(`AUTH PLAIN ${Buffer.from(`\0${username}\0${password}`, "utf8").toString("base64")}\r\n`);
      this.expect(await this.reply(), 235, "EAUTH");
      return;
    }
    if (this.authMechanisms.has("LOGIN")) {
      this.command = "AUTH LOGIN";
      this.write("AUTH LOGIN\r\n");
      this.expect(await this.reply(), 334, "EAUTH");
      this.write(`${Buffer.from(username, "utf8").toString("base64")}\r\n`);
      this.expect(await this.reply(), 334, "EAUTH");
      this.write(`${Buffer.from(password, "utf8").toString("base64")}\r\n`);
      this.expect(await this.reply(), 235, "EAUTH");
      return;
    }
    throw new NextHopError("the next hop offers neither AUTH PLAIN nor AUTH LOGIN", undefined, "Connection", {
      code: "EAUTH",
      command: "AUTH",
    });
  }

  /** The reply or a NextHopError naming the command and the next hop's answer. */
  private expect(reply: Reply, code: number, errorCode: string): Reply {
    const ok = code === 250 ? reply.code >= 200 && reply.code < 300 : reply.code === code;
    if (ok) return reply;
    throw new NextHopError(reply.text, reply.code >= 400 ? reply.code : 451, "Reply", { code: errorCode, command: this.command });
  }

  /** Writes commands; `replies`: how many answers they ask for. */
  private write(text: string, replies = 1): void {
    if (this.failure) return;
    this.awaited += replies;
    this.socket.write(text);
  }

  private reply(): Promise<Reply> {
    const ready = this.replies.shift();
    if (ready) return Promise.resolve(ready);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<Reply>((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  private attach<S extends net.Socket>(socket: S): S {
    socket.setNoDelay(true);
    socket.setTimeout(this.options.timeoutMs);
    socket.on("data", (chunk: Buffer) => this.read(chunk));
    // Silence for the whole timeout, whatever we waited for (an idle pooled connection closes earlier).
    socket.on("timeout", () =>
      this.destroy(
        new NextHopError(`no answer from the next hop in time (${this.command})`, undefined, "Timeout", {
          code: "ETIMEDOUT",
          command: this.command,
        }),
      ),
    );
    socket.on("error", (error: Error) =>
      this.destroy(new NextHopError(error.message, undefined, "Connection", { code: tlsOrConnection(error), command: this.command })),
    );
    socket.on("close", () =>
      this.fail(
        new NextHopError("the next hop closed the connection", undefined, "Connection", { code: "ECONNECTION", command: this.command }),
      ),
    );
    return socket;
  }

  private read(chunk: Buffer): void {
    const text = this.partial + this.decoder.write(chunk);
    let start = 0;
    for (let end = text.indexOf("\n"); end !== -1; end = text.indexOf("\n", start)) {
      const line = text.slice(start, end).replace(/\r$/, "");
      start = end + 1;
      this.replyLines.push(line);
      if (line.length > 1000 || this.replyLines.length > 100) {
        this.destroy(
          new NextHopError("the next hop sent an overlong reply", undefined, "Connection", { code: "EPROTOCOL", command: this.command }),
        );
        return;
      }
      if (line.charAt(3) === "-") continue;
      const lines = this.replyLines;
      this.replyLines = [];
      const code = Number(lines[0]!.slice(0, 3));
      if (!/^[2-5]\d\d$/.test(lines[0]!.slice(0, 3))) {
        this.destroy(
          new NextHopError(`the next hop sent a malformed reply: ${JSON.stringify(lines[0]!.slice(0, 100))}`, undefined, "Connection", {
            code: "EPROTOCOL",
            command: this.command,
          }),
        );
        return;
      }
      const reply = { code, text: lines.join(" "), lines: lines.map((l) => l.slice(4)) };
      if (this.awaited === 0) {
        // Unprompted (a 421 before an idle-timeout close): never let it pass as the answer to our next command.
        this.destroy(
          new NextHopError(`the next hop said unprompted: ${reply.text.slice(0, 200)}`, undefined, "Connection", {
            code: "ECONNECTION",
            command: this.command,
          }),
        );
        return;
      }
      this.awaited--;
      const waiter = this.waiters.shift();
      if (waiter) waiter.resolve(reply);
      else this.replies.push(reply);
    }
    this.partial = text.slice(start);
    if (this.partial.length > 1000)
      this.destroy(
        new NextHopError("the next hop sent an overlong reply", undefined, "Connection", { code: "EPROTOCOL", command: this.command }),
      );
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const waiter of this.waiters.splice(0)) waiter.reject(this.failure);
  }
}

const nonAscii = (address: string) => /[^\x00-\x7f]/.test(address);

function tlsOptions(options: SmtpClientOptions): tls.ConnectionOptions {
  return {
    host: options.host,
    // SNI carries names only (RFC 6066); an IP address is still verified against the certificate's IP SANs.
    ...(net.isIP(options.host) ? {} : { servername: options.host }),
    ...(options.ca ? { ca: options.ca } : {}),
    ...(options.session ? { session: options.session } : {}),
    minVersion: "TLSv1.2",
  };
}

function tlsOrConnection(error: Error): string {
  const code = (error as NodeJS.ErrnoException).code ?? "";
  return code.startsWith("ERR_TLS") || code.includes("CERT") || /certificate|SSL|TLS/i.test(error.message) ? "ETLS" : "ECONNECTION";
}

/** Why the caller aborted: its reason when it gave an error (the cut-through's reply depends on it). */
function abortReason(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  return reason instanceof Error ? reason : new NextHopError("aborted", undefined, "Message");
}

/**
 * The chunk with every line that starts with "." given a second one (RFC 5321
 * section 4.5.2). `lineStart`: whether the previous chunk ended a line.
 * Without such a line the chunk itself is returned.
 */
export function dotStuffed(chunk: Buffer, lineStart: boolean): Buffer {
  let at = chunk.indexOf(dotLine);
  const first = lineStart && chunk[0] === 0x2e;
  if (at === -1 && !first) return chunk;
  const parts: Buffer[] = [];
  let from = 0;
  if (first) {
    parts.push(Buffer.from("."));
  }
  while (at !== -1) {
    parts.push(chunk.subarray(from, at + 2), Buffer.from("."));
    from = at + 2;
    at = chunk.indexOf(dotLine, from);
  }
  parts.push(chunk.subarray(from));
  return Buffer.concat(parts);
}
