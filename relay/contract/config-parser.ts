// Parses and validates relay config text (YAML or JSON): part of the relay's
// contract, so the relay on load and the operator reading a rendered config back
// apply the same rules. Every check that can be made on the config alone is
// made here, with a message naming the field. Reading the file and resolving
// its paths is the relay's own business (relay/config/file.ts).
import { isIP } from "node:net";
import { Value } from "@sinclair/typebox/value";
import { parse } from "yaml";
import "../../lib/formats.js";
import { RelayConfig, configVersion, type DomainEntry, type DomainOutbound } from "./config.js";
import { configAddressProblem } from "./mailbox.js";

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`invalid relay config ${file}:\n  - ${problems.join("\n  - ")}`);
    this.name = "ConfigError";
  }
}

/** Paths present in `raw` but gone from its cleaned copy (TypeBox's Value.Clean drops what the schema does not name). */
function unknownFields(raw: unknown, cleaned: unknown, path = ""): string[] {
  if (Array.isArray(raw) && Array.isArray(cleaned)) return raw.flatMap((item, i) => unknownFields(item, cleaned[i], `${path}/${i}`));
  if (!raw || typeof raw !== "object" || !cleaned || typeof cleaned !== "object") return [];
  const kept = cleaned as Record<string, unknown>;
  return Object.entries(raw as Record<string, unknown>).flatMap(([key, value]) =>
    key in kept ? unknownFields(value, kept[key], `${path}/${key}`) : [`${path}/${key}`],
  );
}

export function parseConfig(text: string, file = "<config>"): RelayConfig {
  let raw: unknown;
  try {
    raw = parse(text, { maxAliasCount: 0 });
  } catch (error) {
    throw new ConfigError(file, [`not valid YAML or JSON: ${(error as Error).message}`]);
  }
  if (typeof raw === "object" && raw !== null && "version" in raw && raw.version !== configVersion) {
    throw new ConfigError(file, [`version is ${JSON.stringify(raw.version)}; this relay understands ${configVersion}`]);
  }
  const schemaProblems = [...Value.Errors(RelayConfig, raw)].map((e) => `${e.path || "/"}: ${e.message}`);
  if (schemaProblems.length > 0) throw new ConfigError(file, schemaProblems.slice(0, 20));
  // A field the relay does not know is a typo or a config for another version: refused, never ignored.
  const unknown = unknownFields(raw, Value.Clean(RelayConfig, structuredClone(raw)));
  if (unknown.length > 0)
    throw new ConfigError(
      file,
      unknown.slice(0, 20).map((path) => `${path}: unknown field (misspelt, or meant for another config version?)`),
    );
  const config = raw as RelayConfig;
  const problems = semanticProblems(config);
  if (problems.length > 0) throw new ConfigError(file, problems);
  return config;
}

/** A problem with one PROXY-protocol range (an address or a CIDR), or undefined; /0 only where `everyone` may be meant. */
function rangeProblem(range: string, everyone = false): string | undefined {
  const [address, prefix, extra] = range.split("/");
  const version = isIP(address ?? "");
  if (version === 0 || extra !== undefined) return `${range} is not an IP address or CIDR range`;
  if (prefix === undefined) return undefined;
  if (!/^[0-9]{1,3}$/.test(prefix) || Number(prefix) > (version === 4 ? 32 : 128)) return `${range} has no valid prefix length`;
  if (Number(prefix) === 0 && !everyone) return `${range} trusts every address: any client could then name its own source address`;
  return undefined;
}

/** Rules that span fields: what the schema alone cannot say. */
function semanticProblems(config: RelayConfig): string[] {
  const problems: string[] = [];
  if (!config.listeners.starttls && !config.listeners.implicitTls && !config.listeners.forwarded) {
    problems.push("/listeners: at least one of starttls, implicitTls or forwarded is required");
  }
  problems.push(...forwardedProblems(config));
  for (const [i, range] of (config.proxyProtocol?.trustedRanges ?? []).entries()) {
    const problem = rangeProblem(range);
    if (problem) problems.push(`/proxyProtocol/trustedRanges/${i}: ${problem}`);
  }
  for (const [i, range] of (config.proxyProtocol?.allowedClients ?? []).entries()) {
    const problem = rangeProblem(range, true);
    if (problem) problems.push(`/proxyProtocol/allowedClients/${i}: ${problem}`);
  }
  const { outbound } = config;
  if (outbound && !config.listeners.submission) problems.push("/outbound: set listeners.submission, or outbound mail has no way in");
  if (config.limits.spoolBytes !== undefined && config.limits.spoolBytes < config.limits.maxMessageBytes) {
    problems.push("/limits/spoolBytes: must be at least limits.maxMessageBytes, or a message of the largest size could never be signed");
  }
  if (config.limits.forwardedMemoryBytes !== undefined && config.limits.forwardedMemoryBytes < config.limits.maxMessageBytes) {
    problems.push(
      "/limits/forwardedMemoryBytes: must be at least limits.maxMessageBytes, or a forwarded message of the largest size could never be checked",
    );
  }
  if (outbound?.unconnectedSenders === "DefaultTransport" && !outbound.defaultTransport) {
    problems.push("/outbound/defaultTransport: required when unconnectedSenders is DefaultTransport");
  }
  for (const [i, domain] of config.domains.entries()) {
    if (domain.outbound && !outbound) problems.push(`/domains/${i}/outbound: set the top-level outbound section too`);
    if (outbound?.systemDomains.includes(domain.domain))
      problems.push(`/domains/${i}/domain: ${domain.domain} is a system domain and cannot be connected`);
  }
  const usernames = new Map<string, string>();
  const domains = new Set<string>();
  config.domains.forEach((domain, i) => {
    const at = `/domains/${i}`;
    if (domains.has(domain.domain)) problems.push(`${at}/domain: ${domain.domain} is listed twice`);
    domains.add(domain.domain);
    problems.push(...domainProblems(domain, at));
    domain.credentials.forEach((credential, j) => {
      const owner = usernames.get(credential.username);
      if (owner) problems.push(`${at}/credentials/${j}/username: ${credential.username} is already used by ${owner}`);
      usernames.set(credential.username, `${domain.domain} version ${credential.version}`);
    });
    domain.outbound?.submission.forEach((credential, j) => {
      const owner = usernames.get(credential.username);
      if (owner) problems.push(`${at}/outbound/submission/${j}/username: ${credential.username} is already used by ${owner}`);
      usernames.set(credential.username, `${domain.domain} submission version ${credential.version}`);
    });
  });
  return problems;
}

/** Whether a DNS server entry is an IP address, optionally with a port (the forms node:dns setServers takes). */
export function isDnsServer(entry: string): boolean {
  const port = (p: string) => /^\d{1,5}$/.test(p) && Number(p) >= 1 && Number(p) <= 65535;
  if (isIP(entry) !== 0) return true;
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(entry);
  if (v6) return isIP(v6[1]!) === 6 && port(v6[2]!);
  const v4 = /^([^:]+):(\d+)$/.exec(entry);
  return v4 !== null && isIP(v4[1]!) === 4 && port(v4[2]!);
}

function forwardedProblems(config: RelayConfig): string[] {
  const problems: string[] = [];
  const sealers = new Set<string>();
  for (const [i, sealer] of (config.forwarded?.trustedArcSealers ?? []).entries()) {
    if (sealer !== sealer.toLowerCase())
      problems.push(`/forwarded/trustedArcSealers/${i}: ${sealer} must be lowercase (write ${sealer.toLowerCase()})`);
    if (sealers.has(sealer.toLowerCase())) problems.push(`/forwarded/trustedArcSealers/${i}: ${sealer} is listed twice`);
    sealers.add(sealer.toLowerCase());
  }
  for (const [i, server] of (config.forwarded?.dnsServers ?? []).entries()) {
    if (!isDnsServer(server))
      problems.push(
        `/forwarded/dnsServers/${i}: ${server} is not an IP address, or an IP address with a port (192.0.2.53:5353, [2001:db8::53]:53)`,
      );
  }
  config.domains.forEach((domain, i) => {
    if (domain.mode !== "Forwarded") return;
    if (domain.credentials.length > 0) {
      problems.push(
        `/domains/${i}/credentials: ${domain.domain} is Forwarded, so it has no inbound credentials: remove them, or set mode Authenticated`,
      );
    }
    if (!config.listeners.forwarded)
      problems.push(`/domains/${i}/mode: ${domain.domain} is Forwarded, but listeners.forwarded is not set: its mail has no way in`);
  });
  return problems;
}

function outboundProblems(domain: string, outbound: DomainOutbound, at: string): string[] {
  const problems: string[] = [];
  const versions = new Set<number>();
  for (const credential of outbound.submission) {
    if (versions.has(credential.version)) problems.push(`${at}/submission: version ${credential.version} is listed twice`);
    versions.add(credential.version);
  }
  const algorithms = new Set<string>();
  for (const key of outbound.dkim) {
    if (algorithms.has(key.algorithm)) problems.push(`${at}/dkim: two ${key.algorithm} keys; sign with at most one key per algorithm`);
    algorithms.add(key.algorithm);
  }
  const senders = new Set<string>();
  outbound.senders.forEach((sender, i) => {
    const problem = configAddressProblem(sender.address, domain);
    if (problem) problems.push(`${at}/senders/${i}/address: ${problem}`);
    if (senders.has(sender.address)) problems.push(`${at}/senders/${i}/address: ${sender.address} is listed twice`);
    senders.add(sender.address);
  });
  return problems;
}

function domainProblems(domain: DomainEntry, at: string): string[] {
  const problems: string[] = [];
  if (domain.domain !== domain.domain.toLowerCase()) problems.push(`${at}/domain: must be lowercase`);
  const { smtp, webhook } = domain.delivery;
  if (Boolean(smtp) === Boolean(webhook)) problems.push(`${at}/delivery: set exactly one of smtp or webhook`);
  if (smtp && Boolean(smtp.username) !== Boolean(smtp.passwordFile)) {
    problems.push(`${at}/delivery/smtp: username and passwordFile go together`);
  }
  if (smtp?.username && smtp.tls === "None") problems.push(`${at}/delivery/smtp: AUTH to the next hop requires tls StartTLS or Implicit`);
  const versions = new Set<number>();
  for (const credential of domain.credentials) {
    if (versions.has(credential.version)) problems.push(`${at}/credentials: version ${credential.version} is listed twice`);
    versions.add(credential.version);
  }
  if (domain.outbound) problems.push(...outboundProblems(domain.domain, domain.outbound, `${at}/outbound`));
  for (const address of domain.addresses) {
    const problem = configAddressProblem(address, domain.domain);
    if (problem) problems.push(`${at}/addresses: ${problem}`);
  }
  return problems;
}
