// The submission dialogue with the helpdesk: AUTH with the domain's submission
// credential (handled with the inbound AUTH rules), a sender that must route,
// syntactically safe recipients, a From: header naming that same sender
// (author.ts), and cut-through delivery to the customer's server with the
// headers exactly as the helpdesk wrote them.
import type { SMTPServerAddress, SMTPServerDataStream, SMTPServerSession } from "smtp-server";
import { SmtpReply, cutThrough, oneLine, replyFor } from "../forward/cut-through.js";
import { parseMailbox } from "../inbound/address.js";
import { MessageFilter } from "../inbound/message-filter.js";
import { authenticatedUser } from "../inbound/session.js";
import type { Logger } from "../../lib/log.js";
import type { Metrics } from "../ops/metrics.js";
import type { RelayState } from "../state.js";
import { AuthorRefused, checkAuthor } from "./author.js";
import { routeSender, type SenderRoute } from "./route.js";
import { classifyFailure } from "../contract/failures.js";
import { sendOutbound } from "./send.js";

type Callback = (err?: Error | null) => void;

export interface OutboundContext {
  state: () => RelayState;
  metrics: Metrics;
  log: Logger;
}

export class OutboundSessions {
  constructor(private readonly ctx: OutboundContext) {}

  private stillValid(user: { username: string; version: number }): boolean {
    return this.ctx.state().submissionCredentials.stillValid(user.username, user.version);
  }

  onMailFrom(address: SMTPServerAddress, session: SMTPServerSession, callback: Callback): void {
    const user = authenticatedUser(session, "submission");
    if (!user) return callback(new SmtpReply(530, "5.7.0 Authentication required"));
    if (!this.stillValid(user))
      return callback(
        new SmtpReply(451, "4.7.0 The credential this session authenticated with is no longer valid; reconnect and authenticate again"),
      );
    const route = routeSender(this.ctx.state(), user.domain, address.address);
    if (!route.ok) {
      this.refused(route, session, user.domain);
      return callback(new SmtpReply(route.code, route.message));
    }
    // The canonical sender from here on: what was checked is what is sent.
    address.address = route.sender;
    callback();
  }

  onRcptTo(address: SMTPServerAddress, session: SMTPServerSession, callback: Callback): void {
    if (!authenticatedUser(session, "submission")) return callback(new SmtpReply(530, "5.7.0 Authentication required"));
    const parsed = parseMailbox(address.address);
    if (!parsed.ok) {
      this.ctx.log.info("RCPT refused", { session: session.id, reason: parsed.problem });
      return callback(new SmtpReply(553, `5.1.3 Recipient address not accepted (${parsed.problem})`));
    }
    callback();
  }

  onData(stream: SMTPServerDataStream, session: SMTPServerSession, callback: (err?: Error | null, message?: string) => void): void {
    const user = authenticatedUser(session, "submission");
    const state = this.ctx.state();
    const from = session.envelope.mailFrom ? session.envelope.mailFrom.address : "";
    // Routed again on the config in force now: a sender revoked since MAIL is not sent.
    const route: SenderRoute =
      user && this.stillValid(user)
        ? routeSender(state, user.domain, from)
        : { ok: false, reason: "DomainNotServed", code: 451, message: "4.7.0 Authentication no longer valid, try again later" };
    if (!route.ok) {
      if (user) this.refused(route, session, user.domain);
      stream.resume();
      stream.once("end", () => callback(new SmtpReply(route.code, route.message)));
      return;
    }
    const { metrics, log } = this.ctx;
    const filter = new MessageFilter({ ...state.filter, prepend: "", preserveHeaders: true });
    // SMTPUTF8 goes on as the helpdesk declared it (UTF-8 header fields): the customer's server must agree to it.
    const envelope = {
      from: route.sender,
      to: session.envelope.rcptTo.map((r) => r.address),
      smtpUtf8: session.envelope.smtpUtf8 === true,
    };
    const label = route.transport === "Default" ? "default" : route.sender;
    const started = process.hrtime.bigint();
    cutThrough({
      stream,
      filter,
      timeoutMs: state.nextHopTimeoutMs,
      deliver: async (message, signal) =>
        sendOutbound(
          route,
          envelope,
          await checkAuthor(message, route.sender, state.systemDomains, state.filter.maxHeaderBytes),
          signal,
          state.spool,
        ),
    }).then(
      (result) => {
        metrics.outbound.inc({ sender: label, result: "Delivered" });
        metrics.bytes.inc({ direction: "outbound" }, filter.inputBytes);
        metrics.outboundSeconds.observe({ sender: label }, Number(process.hrtime.bigint() - started) / 1e9);
        log.info("outbound message delivered", {
          session: session.id,
          domain: user!.domain,
          sender: route.sender,
          transport: route.transport,
          signed: route.dkim.length > 0,
          bytes: filter.inputBytes,
          server: result.response,
        });
        callback(null, `2.0.0 Accepted by the customer's server: ${oneLine(result.response)}`);
      },
      (error: unknown) => {
        const reply = replyFor(error, filter, stream);
        const result =
          error instanceof AuthorRefused && !filter.rejection
            ? error.reason
            : reply.result.startsWith("NextHop")
              ? classifyFailure(error)
              : reply.result;
        metrics.outbound.inc({ sender: label, result });
        log.warn("outbound message not delivered", {
          session: session.id,
          domain: user!.domain,
          sender: route.sender,
          result,
          reply: `${reply.error.responseCode} ${reply.error.message}`,
        });
        callback(reply.error);
      },
    );
  }

  private refused(route: Extract<SenderRoute, { ok: false }>, session: SMTPServerSession, domain: string): void {
    this.ctx.metrics.outbound.inc({ sender: "", result: route.reason });
    this.ctx.log.info("outbound sender refused", { session: session.id, domain, reason: route.reason });
  }
}
