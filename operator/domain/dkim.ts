// A domain's DKIM keys, decided from what was read: each key's DNS record for
// status, whether that record is published (declared, or found with this very
// key by the DNS check), and, per algorithm, the last published key, the one
// the relay signs with. A key whose record is not confirmed is never used.
// Pure: reconcile.ts reads the keys and asks the DNS; every rule here is
// unit-tested with plain values (test/unit/domain-dkim.test.ts).
import { createPrivateKey } from "node:crypto";
import type { SmtpDomain } from "../../crds/schema.js";
import { dnsRecord } from "../../relay/contract/dkim-record.js";
import type { DesiredCondition } from "../conditions.js";
import type { Problem } from "./inbound-credentials.js";
import type { DkimState } from "./plan.js";
import type { OperatorSettings } from "./render.js";

/** What the DNS said for a name: its TXT records (none for NXDOMAIN/NODATA), or why it could not be asked. */
export type Lookup = { found: string[] } | { error: string };

type DkimKey = NonNullable<NonNullable<SmtpDomain["spec"]["dkim"]>["keys"]>[number];

/** One key as read: its PEM, or why it has none (none at all: a generated key not made, as its domain has no outbound). */
export type DkimKeyRead = { key: DkimKey; pem: string } | { key: DkimKey; problem?: Problem };

export const dkimRecordName = (domain: SmtpDomain, selector: string) => `${selector}._domainkey.${domain.spec.domain}`;

/** Whether the DNS is asked about a key's record: it is not declared published, and there is a resolver to ask. */
export const needsLookup = (key: DkimKey, settings: OperatorSettings) =>
  !(key.recordPublished ?? false) && settings.dnsResolver !== undefined;

/** The public key (p=) of a DKIM record, whitespace removed. */
const publicKeyOf = (record: string) => /(?:^|;)\s*p=([^;]*)/.exec(record.replace(/\s+/g, " "))?.[1]?.replace(/\s+/g, "");

/** The DKIM state of a domain and the problems of its keys, in the keys' order. Pure. */
export function planDkim(
  domain: SmtpDomain,
  settings: OperatorSettings,
  keys: readonly DkimKeyRead[],
  lookup: (name: string) => Lookup | undefined,
): { state: DkimState; problems: Problem[] } {
  const state: DkimState = { signing: [], records: [], pending: [] };
  const problems: Problem[] = [];
  const chosen = new Map<string, DkimState["signing"][number]>();
  const blocking: DesiredCondition[] = [];
  for (const read of keys) {
    const { key } = read;
    if (!("pem" in read)) {
      if (read.problem) problems.push(read.problem);
      continue;
    }
    const { pem } = read;
    const algorithm = key.algorithm === "Ed25519" ? ("ed25519-sha256" as const) : ("rsa-sha256" as const);
    let record: string;
    try {
      const privateKey = createPrivateKey(pem);
      if ((algorithm === "rsa-sha256") !== (privateKey.asymmetricKeyType === "rsa"))
        throw new Error(`it holds a ${privateKey.asymmetricKeyType} key, not ${key.algorithm ?? "RSA2048"}`);
      record = dnsRecord(privateKey);
    } catch (error) {
      problems.push({
        condition: "RelayAvailable",
        reason: "SecretInvalid",
        message: `DKIM key ${key.selector}: not a usable private key (${(error as Error).message})`,
      });
      continue;
    }
    const name = dkimRecordName(domain, key.selector);
    // Declared published, or found with this very key by the DNS check.
    let published = key.recordPublished ?? false;
    if (!published) {
      const fix = `publish TXT ${name} with the value in status.dkim.records`;
      const answer = needsLookup(key, settings) ? lookup(name) : undefined;
      if (!answer) {
        blocking.push({
          type: "DKIMRecordPublished",
          status: "False",
          reason: "RecordNotConfirmed",
          message: `DKIM key ${key.selector}: ${fix}, then set recordPublished: true`,
        });
      } else if ("error" in answer)
        blocking.push({
          type: "DKIMRecordPublished",
          status: "False",
          reason: "DNSCheckFailed",
          message: `DKIM key ${key.selector}: looking up ${name} failed: ${answer.error}`,
        });
      else if (answer.found.some((r) => publicKeyOf(r) === publicKeyOf(record))) published = true;
      else if (answer.found.some((r) => publicKeyOf(r) !== undefined))
        blocking.push({
          type: "DKIMRecordPublished",
          status: "False",
          reason: "RecordMismatch",
          message: `DKIM key ${key.selector}: ${name} publishes another key; ${fix}`,
        });
      else
        blocking.push({
          type: "DKIMRecordPublished",
          status: "False",
          reason: "RecordMissing",
          message: `DKIM key ${key.selector}: no DKIM record at ${name}; ${fix}`,
        });
    }
    if (published) chosen.set(algorithm, { selector: key.selector, algorithm, pem });
    else state.pending.push(key.selector);
    state.records.push({ selector: key.selector, name, value: record, published, signing: false });
  }
  if ((domain.spec.dkim?.keys ?? []).length > 0) {
    state.condition = blocking[0] ?? {
      type: "DKIMRecordPublished",
      status: "True",
      reason: "RecordPublished",
      message: `${state.records.length} DKIM record(s) published`,
    };
  }
  state.signing = [...chosen.values()];
  for (const record of state.records) record.signing = state.signing.some((k) => k.selector === record.selector);
  return { state, problems };
}
