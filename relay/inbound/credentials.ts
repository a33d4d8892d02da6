// Decides whether a username/password pair is one of a domain's credential
// versions, and which. Digests only: the relay never holds inbound passwords.
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { CredentialEntry } from "../contract/config.js";
import { passwordDigest } from "../contract/digests.js";

export type AuthFailure = "UnknownUser" | "WrongPassword" | "Revoked" | "Expired" | "AuthzidNotPermitted";

export type AuthResult =
  { ok: true; domain: string; version: number; username: string } | { ok: false; reason: AuthFailure; domain?: string; version?: number };

interface Entry {
  domain: string;
  version: number;
  username: string;
  digest: Buffer;
  revoked: boolean;
  expiresAt?: number;
}

export class CredentialStore {
  private readonly byUsername = new Map<string, Entry>();
  // Compared against when the username is unknown, so an unknown user costs
  // exactly what a wrong password costs.
  private readonly decoy = createHash("sha256").update(randomBytes(32)).digest();

  constructor(domains: Iterable<{ domain: string; credentials: readonly CredentialEntry[] }>) {
    for (const domain of domains) {
      for (const c of domain.credentials) {
        this.byUsername.set(c.username, {
          domain: domain.domain,
          version: c.version,
          username: c.username,
          digest: Buffer.from(c.passwordSha256, "hex"),
          revoked: c.state === "Revoked",
          ...(c.expiresAt ? { expiresAt: Date.parse(c.expiresAt) } : {}),
        });
      }
    }
  }

  /**
   * Whether a session authenticated earlier may still act on it: the version
   * is still in the config, neither revoked nor expired. Revocation does not
   * drop a session, but its next transaction is refused.
   */
  stillValid(username: string, version: number, now = Date.now()): boolean {
    const entry = this.byUsername.get(username);
    return entry !== undefined && entry.version === version && !entry.revoked && (entry.expiresAt === undefined || now < entry.expiresAt);
  }

  /** Which credential version a username is, if it is one (for logs and metrics: never the username itself). */
  versionOf(username: string): { domain: string; version: number } | undefined {
    const entry = this.byUsername.get(username);
    return entry && { domain: entry.domain, version: entry.version };
  }

  check(username: string, password: string, now = Date.now()): AuthResult {
    const entry = this.byUsername.get(username);
    const digest = Buffer.from(passwordDigest(password), "hex");
    const matches = timingSafeEqual(digest, entry?.digest ?? this.decoy);
    if (!entry) return { ok: false, reason: "UnknownUser" };
    const who = { domain: entry.domain, version: entry.version };
    if (!matches) return { ok: false, reason: "WrongPassword", ...who };
    // State is checked only after the password matched: a revoked or expired
    // version is reported as such only to someone who knows its password.
    if (entry.revoked) return { ok: false, reason: "Revoked", ...who };
    if (entry.expiresAt !== undefined && now >= entry.expiresAt) return { ok: false, reason: "Expired", ...who };
    return { ok: true, username: entry.username, ...who };
  }
}

// Keyed per process: a digest cannot be looked up in a dictionary of likely
// usernames (or passwords typed into the username field), yet repeats from
// one client are recognisable in one pod's logs.
const logKey = randomBytes(32);

/**
 * What a log line may say about a username someone presented: the credential
 * version it is, or, for one that is none, its length and a short keyed
 * digest. Never the string itself: a password typed into the username field
 * would land in the logs.
 */
export function describeUsername(store: CredentialStore, username: string): Record<string, string | number> {
  const known = store.versionOf(username);
  if (known) return { domain: known.domain, credentialVersion: known.version };
  return {
    usernameLength: username.length,
    usernameDigest: createHmac("sha256", logKey).update(username, "utf8").digest("hex").slice(0, 12),
  };
}
