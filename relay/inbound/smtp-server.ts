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
//
// It also holds the connection limits smtp-server does not have, each pinned
// by test/mail/adversarial/connections.test.ts:
// - concurrent connections per source, counted from the TCP accept (before
//   any TLS handshake, so bare connections to 465 count too), or, behind a
//   trusted PROXY-protocol peer, from the real client address it names, as
//   soon as the header is read (again before any TLS handshake);
// - a TLS handshake deadline, for implicit TLS (a bare TCP connection that
//   never sends a ClientHello) and after STARTTLS, much shorter than the idle
//   timeout smtp-server uses for both;
// - a limit on commands before AUTH succeeds, TLS or not: smtp-server's own
//   limit counts only while AUTH is offered, and the relay offers no AUTH
//   before TLS, so before STARTTLS there was none.
//
// Its own size refusals (MAIL FROM with SIZE= over the limit, and DATA over
// it, which rejectOversized answers whatever onData said) get the enhanced
// status code 5.3.4 the relay's other replies carry: smtp-server writes none
// while enhanced codes are hidden (its default). test/mail/forwarded-size.test.ts
// pins both, test/mail/hardening.test.ts the second on the authenticated listener.
//
// And the PROXY protocol, both versions (proxy-protocol.ts): smtp-server's own
// reader (useProxy) knows version 1 only. Its two hooks for it are overridden
// (_expectsProxyHeader, _handleProxy), so its pre-session guard, the implicit
// TLS handshake after the header and connect() stay as they are;
// test/mail/proxy-protocol.test.ts pins them.
import { randomBytes } from "node:crypto";
import type net from "node:net";
import type tls from "node:tls";
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from "smtp-server";
import { SMTPConnection, type SMTPConnectionOptions } from "smtp-server/lib/smtp-connection.js";
import { ProxyHeaderError, readProxyHeader, type AddressRanges, type ProxyTrust } from "./proxy-protocol.js";
import { sourceOf } from "./throttle.js";

// The members init() relies on; typed here because the declarations mark them internal.
interface ConnectionInternals {
  _setListeners(callback: () => void): void;
  connectionReady(): void;
  send(code: number, message: string, context?: string | false): void;
  _onCommand(command: Buffer | string, callback?: () => void): void;
  upgrade(callback: () => void, secureCallback?: () => void): void;
  _server: { options: SMTPServerOptions; connections: Set<unknown> };
  _socket: net.Socket;
  _nextHandler: unknown;
  secure: boolean;
  session: SMTPServerSession;
  name: string;
}

// The server's members the accept path relies on (internal in the declarations).
interface ServerInternals {
  /** Accepted sockets not handed to connect() yet (PROXY header or implicit TLS handshake pending), raw → TLS socket. */
  _pendingSockets: Map<net.Socket, net.Socket | tls.TLSSocket>;
}

export interface ConnectionLimits {
  /** Concurrent connections from one source (IPv4 address, IPv6 /64) on this listener. */
  perSource: number;
  /** A TLS handshake (implicit, or after STARTTLS) and any PROXY header must be done within this. */
  handshakeTimeoutMs: number;
  /** Commands (AUTH excluded) a session may send before it authenticates; the next one gets 421. */
  maxUnauthenticatedCommands: number;
  /**
   * A listener without AUTH (the forwarded one) counts commands between
   * steps of progress instead: a measure that only grows (distinct accepted
   * recipients plus accepted messages); each time it grows the count starts
   * again, so a forwarder sends any number of messages and a prober gets the
   * same few commands between new accepted recipients as an unauthenticated
   * session (RSET and the same recipient again are no progress).
   */
  progress?: (session: SMTPServerSession) => number;
  /** The load balancers that must (and alone may) start a connection with a PROXY header. */
  proxy?: ProxyTrust;
  /**
   * The clients a balancer's header may name (the domain's allowedSourceRanges, which the NetworkPolicy cannot
   * enforce behind a balancer: it sees the balancer); absent, any.
   */
  proxyClients?: AddressRanges;
  /** A refused connection, for the metrics. */
  refused?: (reason: RefusalReason) => void;
  /** A PROXY header read: which version, and the client it names (for the logs). */
  proxied?: (version: 1 | 2, client: string | undefined, balancer: string) => void;
}

export type RefusalReason =
  "PerSourceLimit" | "HandshakeTimeout" | "TooManyCommands" | "ProxyHeaderInvalid" | "ProxyHeaderUntrusted" | "ProxyClientNotAllowed";

export interface SessionTiming {
  /** Wait before the greeting; input before it is refused (421). */
  greetingDelayMs: number;
  /** A session open this long in total is closed with 421, however busy it is. */
  sessionTimeoutMs: number;
}

export class GreetingDelayServer extends SMTPServer {
  /** Each open session's total-lifetime timer, by session id. */
  private readonly lifetimes = new Map<string, NodeJS.Timeout>();
  /** Open connections per source. */
  private readonly perSource = new Map<string, number>();
  /** How each counted socket gives its slot back (STARTTLS strips the socket's listeners: re-attached then). */
  private readonly releases = new WeakMap<net.Socket, () => void>();

  constructor(
    options: SMTPServerOptions,
    private readonly timing: SessionTiming,
    /** Replaced on a config reload: new connections and commands see the new limits. */
    public limits: ConnectionLimits,
  ) {
    super(options);
    // Every accepted socket passes the per-source gate before smtp-server sees it.
    const accept = this.server.listeners("connection")[0] as (socket: net.Socket) => void;
    this.server.removeAllListeners("connection");
    this.server.on("connection", (socket: net.Socket) => this.admit(socket, accept));
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

  /** The per-source gate and the pre-session deadline, at the TCP accept. */
  private admit(socket: net.Socket, accept: (socket: net.Socket) => void): void {
    const implicitTls = this.options.secure === true;
    const proxied = this._expectsProxyHeader(socket);
    // Behind a trusted PROXY peer the source is known only from its header: counted in _handleProxy().
    if (!proxied && !this.claim(socket, socket.remoteAddress ?? "")) {
      this.refuseEarly(socket, "PerSourceLimit");
      return;
    }
    if (implicitTls || proxied) {
      const pending = (this as unknown as ServerInternals)._pendingSockets;
      const deadline = setTimeout(() => {
        const waiting = pending.get(socket);
        if (!waiting) return;
        // Torn down from the top (the TLS socket, when the handshake began), then the raw socket.
        waiting.destroy();
        socket.destroy();
        this.limits.refused?.("HandshakeTimeout");
      }, this.limits.handshakeTimeoutMs);
      deadline.unref();
      socket.once("close", () => clearTimeout(deadline));
    }
    accept(socket);
  }

  /** Closes a socket that has no session yet with a reply, or before an implicit-TLS handshake (nothing can be said then) at once. */
  private refuseEarly(
    socket: net.Socket,
    reason: RefusalReason,
    reply = "421 4.7.0 Too many connections from your address, try again later",
  ): void {
    socket.on("error", () => undefined);
    if (this.options.secure === true) socket.destroy();
    else socket.end(`${reply}\r\n`, () => socket.destroy());
    this.limits.refused?.(reason);
  }

  /** Counts one connection of `address` (or of the count `key`) until `socket` closes; false when it is at its limit. */
  private claim(socket: net.Socket, address: string, key?: string): boolean {
    const source = key ?? sourceOf(address);
    const open = this.perSource.get(source) ?? 0;
    if (open >= this.limits.perSource) return false;
    this.perSource.set(source, open + 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const left = (this.perSource.get(source) ?? 1) - 1;
      if (left <= 0) this.perSource.delete(source);
      else this.perSource.set(source, left);
    };
    this.releases.set(socket, release);
    socket.once("close", release);
    return true;
  }

  /** smtp-server's hook: whether this socket must start with a PROXY header. The trust is reloadable (limits). */
  override _expectsProxyHeader(socket: net.Socket): boolean {
    return this.limits.proxy?.trusts(socket.remoteAddress) ?? false;
  }

  /** smtp-server's hook for reading the header (v1 only there): both versions, from trusted balancers only. */
  override _handleProxy(
    socket: net.Socket,
    callback: (error: Error | null, socketOptions?: SMTPConnectionOptions & { id: string }) => void,
  ): void {
    if (!this._expectsProxyHeader(socket)) {
      super._handleProxy(socket, callback);
      return;
    }
    const balancer = socket.remoteAddress ?? "";
    readProxyHeader(socket, (error, header) => {
      if (error || !header) {
        if (error instanceof ProxyHeaderError) this.limits.refused?.("ProxyHeaderInvalid");
        callback(error ?? new Error("no PROXY header"));
        return;
      }
      this.limits.proxied?.(header.version, header.source?.address, balancer);
      const allowed = this.limits.proxyClients;
      // A client the balancer cannot name (v1 UNKNOWN, v2 UNSPEC) cannot be checked against allowedClients either:
      // refused (fail closed). LOCAL is the balancer itself, not a client.
      // RFC 5321 3.1: a server that will not serve a client may greet it with 554 and a reason.
      if (allowed && !header.local && (!header.source || !allowed.includes(header.source.address))) {
        this.refuseEarly(socket, "ProxyClientNotAllowed", "554 5.7.1 Your address is not allowed to use this relay");
        callback(
          new Error(
            header.source
              ? "the client the PROXY header names is not in proxyProtocol.allowedClients"
              : "a PROXY header that names no client, with proxyProtocol.allowedClients set",
          ),
        );
        return;
      }
      // Counted now, before an implicit-TLS handshake: counted after it, one client behind the balancer could hold
      // every pending slot (maxClients) with connections that never send a ClientHello, and every new connection
      // to the listener, anyone's, would be dropped until the handshake deadline.
      // LOCAL (a health check) is the balancer's own connection, counted as its own. Clients it cannot name share a
      // count of their own beside it: counted as the balancer, they could use up its share and fail its health checks.
      const unnamed = header.local ? sourceOf(balancer) : `unnamed via ${sourceOf(balancer)}`;
      if (!this.claim(socket, header.source?.address ?? balancer, header.source ? undefined : unnamed)) {
        this.refuseEarly(socket, "PerSourceLimit");
        callback(new Error("too many connections from the client the PROXY header names"));
        return;
      }
      const id = BigInt(`0x${randomBytes(10).toString("hex")}`)
        .toString(32)
        .padStart(16, "0");
      const socketOptions: SMTPConnectionOptions & { id: string } = {
        id,
        ...(header.source ? { remoteAddress: header.source.address, remotePort: header.source.port } : {}),
      };
      callback(null, socketOptions);
    });
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
    this.guard(internals);
    const send = internals.send.bind(internals);
    internals.send = (code, message, context) => {
      if (context === "MESSAGE_TOO_BIG")
        send(code, `5.3.4 Message exceeds the maximum size of ${Number(internals._server.options.size)} bytes`, context);
      else send(code, message, context);
    };
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

  /** The command limit before AUTH and the STARTTLS handshake deadline, on one connection. */
  private guard(internals: ConnectionInternals): void {
    const { maxUnauthenticatedCommands, handshakeTimeoutMs, progress } = this.limits;
    const onCommand = internals._onCommand.bind(internals);
    let commands = 0;
    let auths = 0;
    let progressed = 0;
    internals._onCommand = (command, callback) => {
      const now = progress?.(internals.session) ?? 0;
      if (now > progressed) {
        progressed = now;
        commands = 0;
        auths = 0;
      }
      // Authenticated sessions (every message) pay one property read.
      if (!internals.session.user && !internals._nextHandler) {
        const name = (typeof command === "string" ? command.slice(0, 5) : command.subarray(0, 5).toString("latin1")).trim().toUpperCase();
        // A PROXY header from an address not trusted to send one (the trusted ones' are read before the session):
        // refused outright, so a client learns its claimed address is never believed.
        if (name === "PROXY") {
          this.limits.refused?.("ProxyHeaderUntrusted");
          internals.send(421, "4.7.0 PROXY header from an address not trusted to send one, closing connection");
          return;
        }
        // AUTH has a count of its own, so failed logins do not use up EHLO and STARTTLS; an unknown
        // mechanism (504) never reaches the per-connection failure limit, so this one bounds it.
        const over = name === "AUTH" ? ++auths > maxUnauthenticatedCommands : name !== "QUIT" && ++commands > maxUnauthenticatedCommands;
        if (over) {
          this.limits.refused?.("TooManyCommands");
          internals.send(421, "4.7.0 Too many commands before authentication, closing connection");
          return;
        }
      }
      onCommand(command, callback);
    };
    const upgrade = internals.upgrade.bind(internals);
    internals.upgrade = (callback, secureCallback) => {
      const socket = internals._socket;
      const deadline = setTimeout(() => {
        if (internals.secure || socket.destroyed) return;
        this.limits.refused?.("HandshakeTimeout");
        socket.destroy();
      }, handshakeTimeoutMs);
      deadline.unref();
      // Cleared at once either way: a pending timer would keep the whole closed connection alive (the soak test sees it).
      upgrade(callback, () => {
        clearTimeout(deadline);
        secureCallback?.();
      });
      socket.once("close", () => clearTimeout(deadline));
      // smtp-server removed every listener from the plain socket: the slot is given back when it closes all the same.
      const release = this.releases.get(socket);
      if (release) socket.once("close", release);
    };
  }
}
