// Which inbound credential versions exist, which are usable, and what the
// relay must know of them. Pure: Secrets are read by the caller.
import { randomBytes } from "node:crypto";
import type { SmtpDomain, SmtpDomainSpec } from "../../crds/schema.js";
import { rfc3339 } from "../conditions.js";

export interface IssuedCredential {
  version: number;
  secretName: string;
  username: string;
  /** What the relay accepts: the digest recorded when the version was issued. */
  passwordSha256: string;
  /** The plaintext, while the Secret still holds the issued one (the snippets need it); absent once edited by hand. */
  password?: string;
  /** When the Secret was created. */
  createdAt: string;
  /** The version's own Secret (user-supplied via secretRef) rather than one the operator issued. */
  userSupplied: boolean;
}

export type CredentialState = "Active" | "Revoked" | "Expired";

export interface CredentialPlan {
  version: number;
  secretName: string;
  state: CredentialState;
  expiresAt?: string;
  /** Declared Active, but revoked or expired before: kept Revoked (revocation is for good). */
  reactivationRefused?: true;
}

/** The annotation on an operator-issued credential Secret that records its revocation (it travels with the Secret, e.g. into a backup). */
export const revokedAtAnnotation = "smtpconnector.dev/revoked-at";

export function credentialSecretName(domain: SmtpDomain, version: number): string {
  return `${credentialSecretPrefix(domain)}${version}`;
}

/** The credential version an operator-given name stands for (credentialSecretName), or undefined. */
export function credentialVersionOfName(domain: SmtpDomain, name: string): number | undefined {
  const prefix = credentialSecretPrefix(domain);
  const digits = name.startsWith(prefix) ? name.slice(prefix.length) : "";
  return /^[0-9]+$/.test(digits) ? Number(digits) : undefined;
}

const credentialSecretPrefix = (domain: SmtpDomain) => `${domain.metadata.name}-inbound-v`;

/** A new username and a 256-bit password; generated once per version and kept in its Secret. */
export function newCredential(domain: SmtpDomain, version: number): { username: string; password: string } {
  return {
    username: `${domain.metadata.name}-v${version}-${randomBytes(3).toString("hex")}`,
    password: alphanumeric(43),
  };
}

const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/**
 * Letters and digits only (43 of them carry 256 bits): nothing a mail
 * server's config syntax, a shell or a command-line tool can misread, such as
 * a leading "-" or a ":" in a Postfix password map.
 */
export function alphanumeric(length: number): string {
  let out = "";
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      // 248 = 4 × 62: rejecting the rest keeps every character equally likely.
      if (byte < 248 && out.length < length) out += alphabet[byte % 62];
    }
  }
  return out;
}

export type InboundMode = NonNullable<SmtpDomainSpec["inbound"]["mode"]>;

/** The domain's declared inbound mode (the CRD defaults it; a plain object may lack it). */
export function inboundMode(domain: SmtpDomain): InboundMode {
  // Read defensively: the address side judges with partial domain objects (tests, and a domain read as metadata).
  const inbound = domain.spec.inbound as SmtpDomainSpec["inbound"] | undefined;
  return inbound?.mode ?? "Authenticated";
}

type DeclaredVersion = NonNullable<SmtpDomainSpec["inbound"]["credentials"]>[number];

/**
 * The credential versions the operator works from. Authenticated: the spec's,
 * or when it lists none one version with the next number never used (1 for a
 * new domain; after a stretch in Forwarded mode, the one after every revoked
 * version, since a version once issued is never issued again). Forwarded:
 * every version on record (status.credentials) and every one with a Secret of
 * this domain's (`issuedSecrets`: issued, but its status never written), each
 * as Revoked, so that the switch revokes them for good through the same path
 * as a spec revocation (records, Secret annotation, Event) and their digests
 * stay on record.
 */
export function declaredCredentials(domain: SmtpDomain, issuedSecrets: readonly number[] = []): DeclaredVersion[] {
  if (inboundMode(domain) === "Forwarded") {
    const onRecord = (domain.status?.credentials ?? []).map((c) => ({
      version: c.version,
      state: "Revoked" as const,
      ...(c.secretName !== credentialSecretName(domain, c.version) ? { secretRef: { name: c.secretName } } : {}),
    }));
    const unrecorded = [...new Set(issuedSecrets)]
      .filter((v) => !onRecord.some((c) => c.version === v))
      .map((version) => ({ version, state: "Revoked" as const }));
    return [...onRecord, ...unrecorded].sort((a, b) => a.version - b.version);
  }
  const declared = domain.spec.inbound.credentials;
  if (declared && declared.length > 0) return declared;
  return [{ version: Math.max(0, ...(domain.status?.revokedVersions ?? [])) + 1 }];
}

/**
 * Plans every declared version: its Secret and its state. An older Active
 * version expires `gracePeriod` after the newest version was issued. A
 * version in `retired` (revoked or expired before, whatever the spec says
 * now) is never Active again.
 */
export function planCredentials(
  domain: SmtpDomain,
  issued: ReadonlyMap<number, IssuedCredential>,
  now: Date,
  retired: ReadonlySet<number> = new Set(),
  issuedSecrets: readonly number[] = [],
): CredentialPlan[] {
  const declared = declaredCredentials(domain, issuedSecrets);
  // A refused re-addition does not count as the newest: it would shorten the grace of the one in use.
  const newest = Math.max(0, ...declared.filter((c) => c.state === "Revoked" || !retired.has(c.version)).map((c) => c.version));
  const newestIssuedAt = issued.get(newest)?.createdAt;
  const grace = domain.spec.inbound.gracePeriod ? parseDuration(domain.spec.inbound.gracePeriod) : undefined;
  return declared
    .map((c) => {
      const secretName = c.secretRef?.name ?? credentialSecretName(domain, c.version);
      if (c.state === "Revoked") return { version: c.version, secretName, state: "Revoked" as const };
      let planned: CredentialPlan = { version: c.version, secretName, state: "Active" };
      if (c.version !== newest && grace !== undefined && newestIssuedAt) {
        const expiresAt = rfc3339(new Date(Date.parse(newestIssuedAt) + grace));
        planned = { version: c.version, secretName, state: Date.parse(expiresAt) <= now.getTime() ? "Expired" : "Active", expiresAt };
      }
      if (planned.state === "Active" && retired.has(c.version))
        return { version: c.version, secretName, state: "Revoked" as const, reactivationRefused: true as const };
      return planned;
    })
    .sort((a, b) => a.version - b.version);
}

/** Go-style durations as the CRD accepts them (e.g. 168h, 1h30m, 90s). */
export function parseDuration(text: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  const re = /([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/g;
  let consumed = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    total += Number(m[1]) * units[m[2]!]!;
    consumed += m[0].length;
  }
  if (consumed !== text.length || consumed === 0) throw new Error(`invalid duration ${JSON.stringify(text)}`);
  return total;
}

/**
 * The ready-to-paste snippets stored beside the credentials for the customer's
 * IT team. With an operator-issued certificate, the CA to trust is stored
 * beside them (ca.crt) and the snippets say where it goes; otherwise the
 * relay's certificate chains to a CA the server already trusts.
 */
export function clientSnippets(
  mailDomain: string,
  host: string,
  username: string,
  password: string,
  caPem?: string,
): Record<string, string> {
  const caFile = "/etc/postfix/smtp-connector-ca.crt";
  const eximCaFile = "/etc/exim4/smtp-connector-ca.crt";
  return {
    "postfix-main.cf": [
      "# Relay the support domain to the helpdesk's relay, authenticated, TLS required and verified.",
      `# transport_maps = inline:{ <your domain>=smtp:[${host}]:587 }`,
      "smtp_sasl_auth_enable = yes",
      `smtp_sasl_password_maps = inline:{ [${host}]:587=${username}:${password} }`,
      "smtp_sasl_security_options = noanonymous",
      "smtp_sasl_tls_security_options = noanonymous",
      ...(caPem
        ? [
            `# The relay's certificate is issued by the helpdesk operator's own CA: save ca.crt from this Secret as ${caFile}.`,
            `smtp_tls_policy_maps = inline:{ { [${host}]:587 = secure match=${host} tafile=${caFile} } }`,
          ]
        : [`smtp_tls_policy_maps = inline:{ { [${host}]:587 = secure match=${host} } }`]),
      "",
    ].join("\n"),
    "exchange-connector.txt": [
      "Send connector (Exchange-style server):",
      `  Smart host: ${host}, port 587`,
      "  Authentication: Basic authentication, only after starting TLS",
      `  User name: ${username}`,
      `  Password: ${password}`,
      "  Address space: the support domain only",
      ...(caPem
        ? [
            "  Certificate: the relay's certificate is issued by the helpdesk operator's own CA (ca.crt in this Secret).",
            "  Windows has no per-connector trust store: a CA imported into Trusted Root Certification Authorities is",
            "  trusted machine-wide, for every purpose. Do not import it there; ask the helpdesk for a relay certificate",
            `  from your organisation's own CA or a public one for ${host} (spec.relay.tls.secretName, e.g. cert-manager).`,
            "  If ca.crt must be imported anyway: its X.509 name constraints limit it to the helpdesk's relay names.",
          ]
        : []),
      "",
    ].join("\n"),
    "exim.conf": [
      "# Exim 4: relay the support domain to the helpdesk's relay, authenticated, TLS required and verified.",
      ...(caPem
        ? [`# The relay's certificate is issued by the helpdesk operator's own CA: save ca.crt from this Secret as ${eximCaFile}.`]
        : []),
      "# --- in the routers section, before the dnslookup router:",
      "smtp_connector:",
      "  driver = manualroute",
      `  domains = ${mailDomain}`,
      "  transport = smtp_connector",
      `  route_list = * ${host}::587 byname`,
      "# --- in the transports section:",
      "smtp_connector:",
      "  driver = smtp",
      "  port = 587",
      "  hosts_require_tls = *",
      "  hosts_require_auth = *",
      `  tls_verify_certificates = ${caPem ? eximCaFile : "system"}`,
      "  # Without tls_verify_hosts Exim only *tries* to verify, and delivers to a server it cannot verify.",
      "  tls_verify_hosts = *",
      "  tls_verify_cert_hostnames = *",
      "# --- in the authenticators section (sent to the relay only):",
      "smtp_connector_plain:",
      "  driver = plaintext",
      "  public_name = PLAIN",
      `  client_condition = \${if eq{$host}{${host}}}`,
      `  client_send = ^${username}^${password}`,
      "",
    ].join("\n"),
    ...(caPem ? { "ca.crt": caPem } : {}),
  };
}
