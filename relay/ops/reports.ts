// What the relay remembers for the operator, who pulls it over the control
// API: each inbound credential version's last successful AUTH and last refusal
// (revoked, expired), and the verification tokens that came back through the
// authenticated relay, and the brute-force lockouts in force, so the platform
// team learns that a server locked itself out. In memory and bounded: a
// restart forgets, and the operator's verification then times out and tries
// again.
import type { CredentialUse, LockoutEntry, ReceiptAnswer } from "../contract/control-api.js";
import { verificationTokenDigest } from "../contract/digests.js";
import type { LockoutReport, VerificationReceipt } from "../inbound/session.js";

const maxReceipts = 10_000;
const maxLockouts = 1_000;
const receiptTtlMs = 24 * 60 * 60 * 1000;

export class RelayReports {
  private readonly lockouts = new Map<string, LockoutEntry & { untilMs: number }>();
  private readonly credentials = new Map<string, CredentialUse>();
  /** By SHA-256 of the token: the operator keeps only digests in status, and asks by digest. */
  private readonly receipts = new Map<string, VerificationReceipt>();

  used(domain: string, version: number, at: Date): void {
    this.entry(domain, version).lastUsedAt = at.toISOString();
  }

  refused(domain: string, version: number, reason: string, at: Date): void {
    const entry = this.entry(domain, version);
    entry.lastRefusedAt = at.toISOString();
    entry.lastRefusedReason = reason;
  }

  lockedOut(lockout: LockoutReport): void {
    const key = [lockout.kind, lockout.scope, lockout.source, lockout.domain ?? "", lockout.version ?? ""].join("/");
    this.lockouts.delete(key);
    this.lockouts.set(key, {
      kind: lockout.kind,
      scope: lockout.scope,
      source: lockout.source,
      ...(lockout.domain !== undefined && lockout.version !== undefined ? { domain: lockout.domain, version: lockout.version } : {}),
      since: lockout.at.toISOString(),
      until: new Date(lockout.until).toISOString(),
      untilMs: lockout.until,
    });
    for (const [oldest, l] of this.lockouts) {
      if (this.lockouts.size <= maxLockouts && Date.now() < l.untilMs) break;
      this.lockouts.delete(oldest);
    }
  }

  /** Lockouts in force now, oldest first. */
  activeLockouts(now = Date.now()): LockoutEntry[] {
    return [...this.lockouts.values()].filter((l) => now < l.untilMs).map(({ untilMs: _, ...l }) => l);
  }

  arrived(receipt: VerificationReceipt): void {
    const key = verificationTokenDigest(receipt.token);
    // The forwarded listener takes mail from anyone: whoever saw a token must
    // not turn its authenticated (or verified) arrival into a weaker one.
    const known = this.receipts.get(key);
    // Nor may an arrival for another domain (anyone's forwarded mail, or another
    // domain's login, carrying a token it saw) replace it, however strong: a
    // token belongs to one address, and the first domain it arrived for stands.
    if (known && Date.now() - known.at.getTime() < receiptTtlMs && (known.domain !== receipt.domain || strength(known) > strength(receipt)))
      return;
    this.receipts.delete(key);
    this.receipts.set(key, receipt);
    // Oldest first out: a Map iterates in insertion order.
    for (const [oldest, r] of this.receipts) {
      if (this.receipts.size <= maxReceipts && Date.now() - r.at.getTime() < receiptTtlMs) break;
      this.receipts.delete(oldest);
    }
  }

  receipt(tokenSha256: string): ReceiptAnswer | undefined {
    const r = this.receipts.get(tokenSha256);
    if (!r || Date.now() - r.at.getTime() >= receiptTtlMs) return undefined;
    const arrivedAt = r.at.toISOString();
    if (r.path === "forwarded") return { domain: r.domain, arrivedAt, path: "forwarded", forwarded: { ...r.forwarded } };
    return { domain: r.domain, credentialVersion: r.credentialVersion, arrivedAt, path: "authenticated" };
  }

  credentialUse(): CredentialUse[] {
    return [...this.credentials.values()].map((c) => ({ ...c }));
  }

  private entry(domain: string, version: number): CredentialUse {
    const key = `${domain}/${version}`;
    let entry = this.credentials.get(key);
    if (!entry) {
      entry = { domain, version };
      this.credentials.set(key, entry);
    }
    return entry;
  }
}

/** Authenticated beats forwarded-and-verified beats forwarded-unverified. */
function strength(receipt: VerificationReceipt): number {
  if (receipt.path === "authenticated") return 2;
  return receipt.forwarded.dkimAligned || receipt.forwarded.arcTrusted ? 1 : 0;
}
