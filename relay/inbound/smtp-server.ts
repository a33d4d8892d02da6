// smtp-server with a configurable greeting delay.
//
// smtp-server waits a fixed 100 ms before every greeting to catch early
// talkers. A sender that opens one connection per message (Postfix does,
// unless it has a backlog) is then capped at 10 messages per second per
// connection. This subclass keeps the early-talker check — a client that sends
// before the greeting is refused with 421 — but lets the wait be configured,
// 0 included. It overrides the two documented, typed extension points
// (SMTPServer.connect, SMTPConnection.init); test/mail/operations.test.ts
// pins the behaviour so an upgrade that changes them fails loudly.
// See docs/adr/0003-relay-on-smtp-server.md.
import type net from "node:net";
import type tls from "node:tls";
import { SMTPServer, type SMTPServerOptions } from "smtp-server";
import { SMTPConnection, type SMTPConnectionOptions } from "smtp-server/lib/smtp-connection.js";

// The members init() relies on; typed here because the declarations mark them internal.
interface ConnectionInternals {
  _setListeners(callback: () => void): void;
  connectionReady(): void;
  send(code: number, message: string, context?: string | false): void;
  _server: { options: SMTPServerOptions; connections: Set<unknown> };
  name: string;
}

export interface SessionTiming {
  /** Wait before the greeting; input before it is refused (421). */
  greetingDelayMs: number;
  /** A session open this long in total is closed with 421, however busy it is. */
  sessionTimeoutMs: number;
}

export class GreetingDelayServer extends SMTPServer {
  /** Each open session's total-lifetime timer, by session id. */
  private readonly lifetimes = new Map<string, NodeJS.Timeout>();

  constructor(
    options: SMTPServerOptions,
    private readonly timing: SessionTiming,
  ) {
    super(options);
    // The lifetime timer ends with the session. Not on the socket's 'close':
    // STARTTLS replaces the socket and smtp-server removes every listener from
    // the plain one, so that timer (and the whole closed connection it
    // references) would live on for sessionTimeoutSeconds — found by the soak.
    const onClose = this.onClose.bind(this);
    this.onClose = (session, callback) => {
      clearTimeout(this.lifetimes.get(session.id));
      this.lifetimes.delete(session.id);
      onClose(session, callback);
    };
  }

  override connect(socket: net.Socket | tls.TLSSocket, socketOptions?: SMTPConnectionOptions | null): void {
    const connection = new SMTPConnection(this, socket, socketOptions);
    this.connections.add(connection);
    connection.on("error", (err: Error) => this.emit("error", err));
    connection.on("connect", (data: unknown) => this.emit("connect", data));
    const delay = this.timing.greetingDelayMs;
    const lifetime = setTimeout(() => {
      this.lifetimes.delete(connection.id);
      internals.send(421, "4.4.2 Session too long, closing connection");
    }, this.timing.sessionTimeoutMs);
    lifetime.unref();
    this.lifetimes.set(connection.id, lifetime);
    const internals = connection as unknown as ConnectionInternals;
    connection.init = () => {
      internals._setListeners(() => {
        const { maxClients } = internals._server.options;
        if (maxClients && internals._server.connections.size > maxClients) {
          internals.send(421, `${internals.name} Too many connected clients, try again in a moment`, false);
          return;
        }
        // Until connectionReady() runs the connection refuses input as an early talker.
        if (delay === 0) setImmediate(() => internals.connectionReady());
        else setTimeout(() => internals.connectionReady(), delay).unref();
      });
    };
    connection.init();
  }
}
