// The forwarded listener's dialogue: mail the customer's mail service
// forwards (Microsoft 365, Google Workspace, or any server after a
// disconnect), without AUTH. Who may send is not known, so nothing it says is
// trusted: recipients are only support addresses (never an open relay), the
// message is delivered cut-through like authenticated mail, and what could be
// checked of it (SPF, DKIM, DMARC, ARC) goes into our own
// Authentication-Results, never auth=pass.
//
// The checks need the whole message (DKIM hashes the body; the results go
// above it), so the filtered message is held in memory, at most
// limits.maxMessageBytes (the message filter stops at the first byte over it,
// and the rest is read and dropped), until the sender's final dot; the next
// hop is then given our header fields and the message, and the sender hears
// 250 only once it accepted. All held messages together draw on one budget
// (limits.forwardedMemoryBytes): a message that would take more gets 452
// 4.3.1, so many large forwards at once cannot exhaust the relay's memory.
import { Readable } from "node:stream";
import type { SMTPServerAddress, SMTPServerDataStream, SMTPServerSession } from "smtp-server";
import type { Logger } from "../../lib/log.js";
import type { Metrics } from "../ops/metrics.js";
import type { RelayState } from "../state.js";
import type { SpoolBudget } from "../outbound/spool.js";
import { SmtpReply } from "../forward/cut-through.js";
import { parseMailbox } from "./address.js";
import { checkForwarded, maxArcSets, maxDkimSignatures, type ForwardedChecks } from "./forwarded-checks.js";
import { MessageFilter } from "./message-filter.js";
import { deliverInbound, receivedHeader, type VerificationReceipt } from "./session.js";

type Callback = (err?: Error | null) => void;

export interface ForwardedContext {
  state: () => RelayState;
  metrics: Metrics;
  log: Logger;
  /** Records a verification token that arrived through the forwarded listener. */
  verificationArrived: (receipt: VerificationReceipt) => void;
}

export class ForwardedSessions {
  /** Per session: the distinct recipients accepted and the messages accepted (the command limit's progress). */
  private readonly progressOf = new WeakMap<SMTPServerSession, { recipients: Set<string>; messages: number }>();

  constructor(private readonly ctx: ForwardedContext) {}

  /** Grows only with a recipient not accepted before in this session or an accepted message. */
  progress(session: SMTPServerSession): number {
    const p = this.progressOf.get(session);
    return p ? p.recipients.size + p.messages : 0;
  }

  private progressed(session: SMTPServerSession): { recipients: Set<string>; messages: number } {
    let p = this.progressOf.get(session);
    if (!p) {
      p = { recipients: new Set(), messages: 0 };
      this.progressOf.set(session, p);
    }
    return p;
  }

  /**
   * Any sender: usually the forwarder's own, SRS-rewritten; SPF judges it after DATA, nothing trusts it.
   * A declared SIZE= over limits.maxMessageBytes got 552 5.3.4 from smtp-server already; one the memory
   * budget could not hold now is told so before it sends (RFC 1870 6.1: 452).
   */
  onMailFrom(address: SMTPServerAddress, _session: SMTPServerSession, callback: Callback): void {
    const declared = address.args ? Number(address.args.SIZE) : NaN;
    if (declared > this.ctx.state().forwardedMemory.available) {
      callback(insufficientMemory());
      return;
    }
    callback();
  }

  onRcptTo(address: SMTPServerAddress, session: SMTPServerSession, callback: Callback): void {
    const parsed = parseMailbox(address.address);
    if (!parsed.ok) {
      this.ctx.log.info("RCPT refused", { session: session.id, listener: "forwarded", reason: parsed.problem });
      callback(new SmtpReply(550, `5.7.1 Recipient address not accepted (${parsed.problem})`));
      return;
    }
    const { mailbox } = parsed;
    const domain = this.ctx.state().domains.get(mailbox.domain);
    if (!domain?.addresses.has(mailbox.address)) {
      this.ctx.log.info("RCPT refused", { session: session.id, listener: "forwarded", reason: "NotASupportAddress" });
      callback(new SmtpReply(550, "5.7.1 Relaying denied: not a support address served here"));
      return;
    }
    // One next hop per message: the first recipient's domain decides, and a
    // recipient of another domain waits for a transaction of its own (452:
    // the sender delivers it later, RFC 5321 4.5.3.1.10).
    const first = session.envelope.rcptTo[0]?.address;
    if (first !== undefined && first.slice(first.lastIndexOf("@") + 1) !== mailbox.domain) {
      callback(new SmtpReply(452, "4.5.3 One domain per message: send to this recipient in another transaction"));
      return;
    }
    // The envelope carries the canonical form from here on: what was checked is what is routed.
    address.address = mailbox.address;
    this.progressed(session).recipients.add(mailbox.address);
    callback();
  }

  onData(stream: SMTPServerDataStream, session: SMTPServerSession, callback: (err?: Error | null, message?: string) => void): void {
    const state = this.ctx.state();
    const to = session.envelope.rcptTo.map((r) => r.address);
    const recipientDomain = to[0]?.slice(to[0].lastIndexOf("@") + 1) ?? "";
    const domain = state.domains.get(recipientDomain);
    if (!domain || !to.every((address) => domain.addresses.has(address))) {
      // A config reload removed a recipient since RCPT.
      stream.resume();
      stream.on("end", () => callback(new SmtpReply(451, "4.7.1 Recipient no longer served here, try again later")));
      return;
    }
    const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : "";
    const sender = parseMailbox(mailFrom);
    const filter = new MessageFilter({ ...state.filter, prepend: "", recordArrived: true });
    const envelope = {
      from: mailFrom,
      to,
      smtpUtf8: session.envelope.smtpUtf8 === true,
      metadata: {
        domain: recipientDomain,
        authenticated: "false",
        path: "forwarded",
        session: session.id,
        receivedAt: new Date().toISOString(),
      },
    };
    let checks: ForwardedChecks | undefined;
    const held = new HeldMessage(state.forwardedMemory);
    deliverInbound(
      this.ctx,
      {
        direction: "forwarded",
        stream,
        session,
        filter,
        timeoutMs: state.nextHopTimeoutMs,
        fields: { listener: "forwarded", domain: recipientDomain },
        deliver: async (filtered, signal) => {
          try {
            // Held once, as the filter emitted it: the checks read the same chunks behind the arrived header.
            const message = await held.collect(filtered);
            // The local part as sent (an SRS hash is case-sensitive), the domain as parsed.
            const checkedSender = sender.ok ? `${mailFrom.slice(0, mailFrom.lastIndexOf("@"))}@${sender.mailbox.domain}` : "";
            checks = await this.check(filter, message, session, checkedSender, recipientDomain, state, signal, held);
            signal.throwIfAborted();
            const head = receivedHeader(state.filter.authservId, session, session.secure ? "ESMTPS" : "ESMTP") + checks.header;
            return await domain.nextHop.send(envelope, Readable.from([Buffer.from(head, "utf8"), ...message]), signal);
          } finally {
            held.readerDone();
          }
        },
        delivered: () => {
          this.progressed(session).messages++;
          if (!checks) return;
          const { verdict } = checks;
          this.ctx.log.info("forwarded message checked", { session: session.id, domain: recipientDomain, ...verdict });
          if (filter.verificationToken)
            this.ctx.verificationArrived({
              token: filter.verificationToken,
              domain: recipientDomain,
              path: "forwarded",
              forwarded: verdict,
              at: new Date(),
            });
        },
      },
      callback,
    );
  }

  /**
   * mailauth's verdict; should it fail outright, the message is still
   * delivered (the sender could never get it through otherwise), with a
   * result that claims nothing.
   */
  private async check(
    filter: MessageFilter,
    delivered: Buffer[],
    session: SMTPServerSession,
    sender: string,
    recipientDomain: string,
    state: RelayState,
    delivery: AbortSignal,
    held: HeldMessage,
  ): Promise<ForwardedChecks> {
    const { authservId } = state.filter;
    // Half the next-hop budget (at most 30 s), so the next hop has the rest; then 451 and the sender retries.
    const budgetMs = Math.min(state.nextHopTimeoutMs / 2, 30_000);
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(new SmtpReply(451, "4.4.3 The message could not be checked in time, try again later")),
      budgetMs,
    );
    const stop = () => controller.abort(delivery.reason);
    delivery.addEventListener("abort", stop, { once: true });
    const { message, skipped } = limitArrived(filter, delivered);
    let checks: ForwardedChecks;
    this.ctx.metrics.forwardedChecksActive.inc();
    // mailauth may read the message after the budget ran out (until its cancelled lookups end): held till then.
    const checksDone = held.reader();
    try {
      checks = await checkForwarded(message, {
        authservId,
        sender,
        ip: session.remoteAddress,
        helo: session.hostNameAppearsAs,
        recipientDomain,
        trustedArcSealers: state.forwarded.trustedArcSealers,
        dnsServers: state.forwarded.dnsServers,
        signal: controller.signal,
        maxElapsedMs: budgetMs,
        skipped,
        settled: () => {
          this.ctx.metrics.forwardedChecksActive.dec();
          checksDone();
        },
      });
    } catch (error) {
      if (controller.signal.aborted) {
        this.ctx.log.warn("forwarded message not checked in time", { session: session.id, domain: recipientDomain, budgetMs });
        throw controller.signal.reason as Error;
      }
      this.ctx.log.warn("forwarded message could not be checked", {
        session: session.id,
        domain: recipientDomain,
        error: (error as Error).message,
      });
      checks = {
        header: `Authentication-Results: ${authservId}; none (the checks failed)\r\n`,
        verdict: { dkimAligned: false, arcTrusted: false },
      };
    } finally {
      clearTimeout(timer);
      delivery.removeEventListener("abort", stop);
      // The lookups still running are cancelled: mailauth ends and lets go of the message.
      controller.abort(new Error("checks done"));
    }
    const { dkimAligned, arcTrusted } = checks.verdict;
    this.ctx.metrics.forwardedVerdicts.inc({ verdict: dkimAligned ? "DkimAligned" : arcTrusted ? "ArcTrusted" : "Unverified" });
    return checks;
  }
}

const insufficientMemory = () => new SmtpReply(452, "4.3.1 Insufficient system storage for this message now, try again later");

/**
 * One forwarded message's bytes, reserved from the relay's forwarded memory
 * budget as they arrive and given back once the last reader (the delivery,
 * and mailauth, which may outlive it) is done with them.
 */
class HeldMessage {
  private bytes = 0;
  private readers = 1;

  constructor(private readonly budget: SpoolBudget) {}

  /** The filtered message; refused (452 4.3.1) at the first chunk the budget cannot hold, and the rest is dropped. */
  async collect(stream: Readable): Promise<Buffer[]> {
    const chunks: Buffer[] = [];
    for await (const chunk of stream) {
      const buffer = chunk as Buffer;
      if (!this.budget.reserve(buffer.length)) throw insufficientMemory();
      this.bytes += buffer.length;
      chunks.push(buffer);
    }
    return chunks;
  }

  /** One more reader; call what it returns (once) when it is done. */
  reader(): () => void {
    this.readers++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.readerDone();
    };
  }

  readerDone(): void {
    if (--this.readers > 0) return;
    this.budget.release(this.bytes);
    this.bytes = 0;
  }
}

/**
 * The message the checks judge: the header fields as they arrived (our
 * X-SmtpConnector-* and forged results removal must not break a signature
 * over them: the relay's own verification email signs its token field), then
 * the filtered body, shared with what the next hop gets. Same header-end
 * decision as the delivered message, so both readers see the same From.
 */
function limitArrived(
  filter: MessageFilter,
  delivered: Buffer[],
): { message: Readable; skipped: { dkimSignatures: number; arcSets: number } } {
  const fields = filter.arrivedFields ?? [];
  // Bounded work for one unauthenticated message (forwarded-checks.ts): the
  // first DKIM signatures only, and no ARC evaluation of an overlong chain.
  const arcSets = fields.filter((f) => f.name === "arc-seal").length;
  const skipArc = arcSets > maxArcSets;
  let signatures = 0;
  const header = fields.filter((f) => {
    if (f.name === "dkim-signature") return ++signatures <= maxDkimSignatures;
    return !(skipArc && f.name.startsWith("arc-"));
  });
  return {
    message: Readable.from([...header.map((f) => f.raw), ...skip(delivered, filter.outputHeaderBytes)]),
    skipped: { dkimSignatures: Math.max(0, signatures - maxDkimSignatures), arcSets: skipArc ? arcSets : 0 },
  };
}

/** The chunks without their first `bytes` bytes (views, no copy). */
function skip(chunks: Buffer[], bytes: number): Buffer[] {
  const out: Buffer[] = [];
  let left = bytes;
  for (const chunk of chunks) {
    if (left >= chunk.length) {
      left -= chunk.length;
      continue;
    }
    out.push(left > 0 ? chunk.subarray(left) : chunk);
    left = 0;
  }
  return out;
}
