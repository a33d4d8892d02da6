// A next hop played by a raw socket server, for what smtp-sink cannot do:
// write bytes after its 220 answer to STARTTLS, offer SMTPUTF8, or write a
// reply one byte at a time. It records every command it read.
import net from "node:net";
import tls from "node:tls";

export interface NextHopScript {
  /** EHLO keywords it offers (STARTTLS is added before TLS when `tls` is given). */
  extensions: string[];
  /** Key and certificate for STARTTLS. */
  tls?: { key: string; cert: string };
  /** The newest TLS version it speaks (TLS 1.2 hands the client a session before the client checked the certificate). */
  maxVersion?: tls.SecureVersion;
  /** Written right after "220 ready" in the same write, still in plaintext. */
  after220?: string | Buffer;
  /** The answer to the final dot. */
  finalReply?: string;
  /** Writes the answer to the final dot one byte per write (a UTF-8 character then spans reads). */
  finalReplyByteByByte?: boolean;
}

export interface ScriptedNextHop {
  port: number;
  /** Every command line read, with "(tls)" before those read inside TLS. */
  transcript: string[];
  /** Each TLS handshake in order: whether it resumed an earlier session (one context, so its tickets open later ones). */
  resumed: boolean[];
  /**
   * Later connections present this key and certificate. Each pair has its own
   * context and ticket keys, kept: switching back to a pair resumes that
   * pair's sessions, as one of two instances behind one name would.
   */
  useCertificate(certificate: { key: string; cert: string }): void;
  stop(): Promise<void>;
}

export async function startScriptedNextHop(script: NextHopScript): Promise<ScriptedNextHop> {
  const transcript: string[] = [];
  const resumed: boolean[] = [];
  const contexts = new Map<string, tls.SecureContext>();
  const contextOf = (certificate: { key: string; cert: string }) => {
    let context = contexts.get(certificate.cert);
    if (!context) {
      context = tls.createSecureContext({ ...certificate, ...(script.maxVersion ? { maxVersion: script.maxVersion } : {}) });
      contexts.set(certificate.cert, context);
    }
    return context;
  };
  let context = script.tls ? contextOf(script.tls) : undefined;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.setNoDelay(true);
    converse(socket, false, { script, transcript, resumed, context });
    socket.write("220 next-hop.test ESMTP\r\n");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address() as net.AddressInfo;
  return {
    port: address.port,
    transcript,
    resumed,
    useCertificate: (certificate) => {
      context = contextOf(certificate);
    },
    stop: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

interface Conversation {
  script: NextHopScript;
  transcript: string[];
  resumed: boolean[];
  context: tls.SecureContext | undefined;
}

function converse(socket: net.Socket, secure: boolean, conversation: Conversation): void {
  const { script, transcript } = conversation;
  let buffer = Buffer.alloc(0);
  let inData = false;
  socket.on("error", () => undefined);
  const onData = (chunk: Buffer) => {
    buffer = Buffer.concat([buffer, chunk]);
    for (let end = buffer.indexOf("\r\n"); end !== -1; end = buffer.indexOf("\r\n")) {
      const line = buffer.subarray(0, end).toString("utf8");
      buffer = buffer.subarray(end + 2);
      if (inData) {
        if (line === ".") {
          inData = false;
          answerFinalDot(socket, script);
        }
        continue;
      }
      transcript.push(secure ? `(tls) ${line}` : line);
      const verb = line.split(" ", 1)[0]!.toUpperCase();
      if (verb === "EHLO") {
        const keywords = [...script.extensions, ...(script.tls && !secure ? ["STARTTLS"] : [])];
        socket.write(["next-hop.test", ...keywords].map((k, i, all) => `250${i === all.length - 1 ? " " : "-"}${k}\r\n`).join(""));
      } else if (verb === "STARTTLS" && conversation.context && !secure) {
        socket.off("data", onData);
        socket.write(Buffer.concat([Buffer.from("220 ready\r\n"), Buffer.from(script.after220 ?? "")]));
        const secured = new tls.TLSSocket(socket, { isServer: true, secureContext: conversation.context });
        secured.once("secure", () => conversation.resumed.push(secured.isSessionReused()));
        converse(secured, true, conversation);
        return;
      } else if (verb === "AUTH") socket.write("235 2.7.0 ok\r\n");
      else if (verb === "DATA") {
        inData = true;
        socket.write("354 go ahead\r\n");
      } else if (verb === "QUIT") socket.end("221 bye\r\n");
      else socket.write("250 2.0.0 ok\r\n");
    }
  };
  socket.on("data", onData);
}

function answerFinalDot(socket: net.Socket, script: NextHopScript): void {
  const reply = Buffer.from(`${script.finalReply ?? "250 2.0.0 queued"}\r\n`, "utf8");
  if (!script.finalReplyByteByByte) {
    socket.write(reply);
    return;
  }
  // Each byte its own write, the next one only once the previous left (Nagle is off).
  const writeFrom = (i: number): void => {
    if (i < reply.length) socket.write(reply.subarray(i, i + 1), () => setImmediate(() => writeFrom(i + 1)));
  };
  writeFrom(0);
}
