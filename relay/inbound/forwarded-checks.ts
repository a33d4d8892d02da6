// What the forwarded listener can say about a message it cannot authenticate
// by login: SPF, DKIM, DMARC and ARC, computed by mailauth, written as one
// Authentication-Results field under our authserv-id, plus the verdict the
// operator's verification reads.
//
// mailauth verifies; the trust policy is ours. Every value that comes from
// the message or the envelope (d=, s=, From domain, MAIL FROM, sealer) is
// written only when it is a plain name, so nothing in a message can add a
// result of its own (";" or a newline in a d= tag would). And arc=pass is
// written only for a chain whose latest sealer the installation trusts: an
// attacker can seal anything with a key of his own domain (docs/security.md).
import { Resolver } from "node:dns/promises";
import type { Readable } from "node:stream";
import { authenticate, type AuthenticateResult, type DNSResolver } from "mailauth";
import { getAlignment } from "mailauth/lib/tools.js";
import type { ForwardedVerdict } from "../contract/control-api.js";

export type { ForwardedVerdict };

export interface ForwardedChecks {
  /** The Authentication-Results field, CRLF-terminated. */
  header: string;
  verdict: ForwardedVerdict;
}

export interface CheckOptions {
  authservId: string;
  /** MAIL FROM as parsed (empty for the null sender or an address we would not parse). */
  sender: string;
  ip: string;
  helo: string;
  /** The domain of the support addresses the message is for. */
  recipientDomain: string;
  trustedArcSealers: readonly string[];
  /** forwarded.dnsServers (the system's resolver when empty). */
  dnsServers: readonly string[];
  /** Aborts every lookup still running: the budget is spent or the sender has gone. */
  signal: AbortSignal;
  /** SPF's own deadline (mailauth's maxElapsedTime), within the budget the signal enforces. */
  maxElapsedMs: number;
  /** What the forwarded listener left out of what mailauth judged (see limitArrived in forwarded-session.ts). */
  skipped?: { dkimSignatures: number; arcSets: number };
  /** Called once mailauth is done with the message (after the verdict, or after the budget ran out). */
  settled?: () => void;
}

/**
 * DNS queries one message may cause, all checks together: SPF's RFC 7208
 * limits (10 lookups, each with its own few answers) plus the capped DKIM
 * signatures, DMARC and the ARC seals of a short chain, with room to spare.
 * Beyond it every query fails at once (the check reads temperror), so
 * nobody's nameserver or ours is made to answer hundreds of queries for one message.
 */
export const maxDnsQueriesPerMessage = 40;

/**
 * How much of a message mailauth is given to judge. Each DKIM signature is a
 * key lookup and, with its own l= or canonicalization, one more pass over the
 * body (synchronous hashing: 100 signatures on 5 MB blocked the process for
 * 2.4 s); forwarders add one or two. The first (topmost, newest) ones count.
 * ARC chains are rarely longer than three; a longer one is not evaluated at all.
 */
export const maxDkimSignatures = 5;
export const maxArcSets = 8;

const domainName = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
const selectorName = /^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$/;
const plainAddress = /^[A-Za-z0-9!#$&'*+/=?^_`{|}~.-]{1,64}@[a-z0-9.-]{1,253}$/;
const results = {
  spf: ["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"],
  dkim: ["pass", "fail", "neutral", "none", "policy", "temperror", "permerror"],
  dmarc: ["pass", "fail", "none", "temperror", "permerror"],
} as const;

/** A lowercase domain name when `value` is one, else undefined. */
export function plainDomain(value: unknown): string | undefined {
  if (typeof value !== "string") return undefined;
  const lower = value.trim().toLowerCase().replace(/\.$/, "");
  return domainName.test(lower) ? lower : undefined;
}

function resultWord(method: keyof typeof results, value: unknown): string {
  const word = typeof value === "string" ? value.toLowerCase() : "";
  // mailauth's deprecated spelling; anything else unexpected is an error on our side of the check.
  if (word === "temperr") return "temperror";
  return (results[method] as readonly string[]).includes(word) ? word : "permerror";
}

/** Whether `domain` is `parent` or below it, at a label boundary. */
function within(domain: string, parent: string): boolean {
  return domain === parent || domain.endsWith(`.${parent}`);
}

/** Whether two names share an Organizational Domain (Public Suffix List, as mailauth's DMARC alignment). */
function sameOrganisation(a: string, b: string): boolean {
  return getAlignment(a, [b], false) !== false;
}

/**
 * A resolver for one message's checks, through the configured servers (the
 * system's when none): at most maxDnsQueriesPerMessage queries, and once the
 * signal aborts, the queries in flight are cancelled and later ones fail at
 * once, so mailauth ends and lets go of the message.
 */
export function dnsResolver(servers: readonly string[], signal: AbortSignal, maxQueries = maxDnsQueriesPerMessage): DNSResolver {
  const resolver = new Resolver({ timeout: 2000, tries: 2 });
  if (servers.length > 0) resolver.setServers([...servers]);
  const cancel = () => resolver.cancel();
  signal.addEventListener("abort", cancel, { once: true });
  let queries = 0;
  return (name, rrtype) => {
    if (signal.aborted) return Promise.reject(Object.assign(new Error("the checks' time is up"), { code: "ECANCELLED" }));
    if (++queries > maxQueries)
      return Promise.reject(Object.assign(new Error(`more than ${maxQueries} DNS queries for one message`), { code: "EREFUSED" }));
    return resolver.resolve(name, rrtype) as Promise<string[][] | string[]>;
  };
}

export async function checkForwarded(message: Buffer | Readable, options: CheckOptions): Promise<ForwardedChecks> {
  const { signal } = options;
  const settled = () => options.settled?.();
  if (signal.aborted) {
    settled();
    throw signal.reason as Error;
  }
  // maxElapsedTime reaches mailauth's SPF check (lib/spf), though its authenticate() typings omit it.
  const authOptions: Parameters<typeof authenticate>[1] & { maxElapsedTime: number } = {
    sender: options.sender,
    ip: options.ip,
    helo: options.helo,
    mta: options.authservId,
    resolver: dnsResolver(options.dnsServers, signal),
    maxElapsedTime: options.maxElapsedMs,
    disableBimi: true,
    ...(options.skipped && options.skipped.arcSets > 0 ? { disableArc: true } : {}),
  };
  const work = authenticate(message, authOptions);
  // The sender hears about the budget when it is spent, not when mailauth is done (the cancelled lookups end it soon after).
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason as Error);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return judge(await Promise.race([work, aborted]), options);
  } finally {
    if (onAbort) signal.removeEventListener("abort", onAbort);
    work.then(settled, settled);
  }
}

/** The header and verdict for mailauth's results: pure, so every wording is unit-tested. */
export function judge(
  result: Pick<AuthenticateResult, "dkim" | "spf" | "dmarc" | "arc" | "dmarcSkipReason">,
  options: Pick<CheckOptions, "authservId" | "sender" | "helo" | "recipientDomain" | "trustedArcSealers" | "skipped">,
): ForwardedChecks {
  const dkim = dkimParts(result);
  const skipped = options.skipped ?? { dkimSignatures: 0, arcSets: 0 };
  // Fixed words with our own counts: nothing of the message's.
  if (skipped.dkimSignatures > 0)
    dkim[dkim.length - 1] +=
      ` (only the first ${maxDkimSignatures} DKIM signatures were evaluated, ${skipped.dkimSignatures} more were not)`;
  const parts: string[] = [spfPart(result, options), ...dkim, dmarcPart(result)];
  const recipient = options.recipientDomain.toLowerCase();
  const arc =
    skipped.arcSets > 0
      ? { text: `arc=none (more than ${maxArcSets} ARC sets, not evaluated)`, trusted: false }
      : arcPart(result, options.trustedArcSealers, recipient);
  parts.push(arc.text);
  // The recipient domain or a parent of it, never above its Organizational
  // Domain: d=co.uk is no signature of support.acme.co.uk.
  const dkimAligned = (result.dkim.results ?? []).some((r) => {
    const d = plainDomain(r.signingDomain);
    return r.status.result === "pass" && d !== undefined && within(recipient, d) && d.includes(".") && sameOrganisation(recipient, d);
  });
  return {
    header: `Authentication-Results: ${options.authservId};\r\n\t${parts.join(";\r\n\t")}\r\n`,
    verdict: { dkimAligned, arcTrusted: arc.trusted, ...(arc.sealer ? { arcSealer: arc.sealer } : {}) },
  };
}

function spfPart(result: Pick<AuthenticateResult, "spf">, options: Pick<CheckOptions, "sender" | "helo">): string {
  const word = resultWord("spf", result.spf ? result.spf.status.result : "none");
  if (options.sender && plainAddress.test(options.sender)) return `spf=${word} smtp.mailfrom=${options.sender}`;
  const helo = plainDomain(options.helo);
  return helo ? `spf=${word} smtp.helo=${helo}` : `spf=${word}`;
}

function dkimParts(result: Pick<AuthenticateResult, "dkim">): string[] {
  const signatures = result.dkim.results ?? [];
  if (signatures.length === 0) return ["dkim=none"];
  return signatures.map((r) => {
    const word = resultWord("dkim", r.status.result);
    // mailauth's entry for a message without any signature.
    if (word === "none" && r.signingDomain === undefined) return "dkim=none";
    const d = plainDomain(r.signingDomain);
    const s = typeof r.selector === "string" && selectorName.test(r.selector) ? r.selector : undefined;
    // RFC 6008: the first characters of b= tell two signatures of one domain apart.
    const b = typeof r.signature === "string" ? r.signature.replace(/[^A-Za-z0-9+/]/g, "").slice(0, 8) : "";
    return [
      `dkim=${word}`,
      ...(d ? [`header.d=${d}`] : ["(unusable d=)"]),
      ...(s ? [`header.s=${s}`] : []),
      ...(b ? [`header.b=${b}`] : []),
    ].join(" ");
  });
}

function dmarcPart(result: Pick<AuthenticateResult, "dmarc" | "dmarcSkipReason">): string {
  if (!result.dmarc) {
    // RFC 9989 5.3.1: no single author domain, so no DMARC verdict; the reason is one of mailauth's fixed words.
    const reason = result.dmarcSkipReason && /^[a-z-]+$/.test(result.dmarcSkipReason) ? ` (${result.dmarcSkipReason})` : "";
    return `dmarc=${result.dmarcSkipReason ? "permerror" : "none"}${reason}`;
  }
  const word = resultWord("dmarc", result.dmarc.status.result);
  const from = plainDomain(result.dmarc.status.header?.from);
  return from ? `dmarc=${word} header.from=${from}` : `dmarc=${word}`;
}

/**
 * ARC: pass only for a verifying chain of a trusted sealer that vouches for
 * the author: its own ARC-Authentication-Results (what it found when the
 * message reached it) say dmarc=pass for the From domain — or, without a
 * DMARC result, a passing DKIM signature aligned with it — and that From
 * domain is the recipient's (same Organizational Domain). A listed sealer
 * alone proves only that some tenant of that service forwarded the message;
 * anybody can open one and forward a forged From through it.
 *
 * Every other chain reads arc=none or arc=fail with a fixed comment: the
 * sealer's d= is the message's word (d=pass.trusted.evil.example), so it is
 * never written; the receipt's arcSealer carries it for the operator.
 */
function arcPart(
  result: Pick<AuthenticateResult, "arc" | "dmarc">,
  trusted: readonly string[],
  recipient: string,
): { text: string; trusted: boolean; sealer?: string } {
  const arc = result.arc;
  if (!arc) return { text: "arc=none", trusted: false };
  // mailauth leaves the chain false, not empty, when there is none.
  const chain: unknown = arc.chain;
  const last = Array.isArray(chain) ? (chain as NonNullable<typeof arc.chain>).at(-1) : undefined;
  const sealer = plainDomain(last?.["arc-seal"]?.parsed?.d?.value);
  const sealerFields = sealer ? { sealer } : {};
  const status = arc.status.result;
  if (status === "pass" && sealer && trusted.some((t) => within(sealer, t))) {
    const from = result.dmarc ? plainDomain(result.dmarc.status.header?.from) : undefined;
    if (from && sameOrganisation(recipient, from) && vouchesFor(arc.authenticationResults, from))
      return { text: `arc=pass (sealed by ${sealer}, a listed sealer)`, trusted: true, ...sealerFields };
    return { text: "arc=none (a listed sealer, but its results do not vouch for the author's domain)", trusted: false, ...sealerFields };
  }
  if (status === "pass") return { text: "arc=none (not a listed sealer)", trusted: false, ...sealerFields };
  if (status === "fail") return { text: "arc=fail", trusted: false, ...sealerFields };
  return { text: "arc=none", trusted: false };
}

/** Whether a sealer's recorded results (mailauth's parse of its ARC-Authentication-Results) pass the author domain. */
function vouchesFor(results: unknown, from: string): boolean {
  if (typeof results !== "object" || results === null) return false;
  const { dmarc, dkim } = results as { dmarc?: unknown; dkim?: unknown };
  const word = (entry: unknown) => {
    const value = typeof entry === "object" && entry !== null ? (entry as { result?: unknown }).result : undefined;
    return typeof value === "string" ? value.toLowerCase() : "";
  };
  const tag = (entry: unknown, name: "from" | "d") => plainDomain((entry as { header?: Record<string, unknown> }).header?.[name]);
  if (dmarc !== undefined) return word(dmarc) === "pass" && tag(dmarc, "from") === from;
  return (
    Array.isArray(dkim) &&
    dkim.some((entry) => word(entry) === "pass" && tag(entry, "d") !== undefined && sameOrganisation(from, tag(entry, "d")!))
  );
}
