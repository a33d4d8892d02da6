// Loads the relay config file: reads it, parses and validates it by the
// contract's rules (relay/contract/config-parser.ts), and resolves the file
// paths in it.
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import type { RelayConfig } from "../contract/config.js";
import { ConfigError, parseConfig } from "../contract/config-parser.js";

/**
 * Loads a config file. Relative file paths in it are relative to the file's
 * directory, so the same config works wherever its Secrets are mounted.
 */
export function loadConfig(file: string): RelayConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new ConfigError(file, [`cannot read the file: ${(error as Error).message}`]);
  }
  return resolvePaths(parseConfig(text, file), dirname(file));
}

function resolvePaths(config: RelayConfig, base: string): RelayConfig {
  const at = (path: string) => (isAbsolute(path) ? path : resolve(base, path));
  config.tls.certFile = at(config.tls.certFile);
  config.tls.keyFile = at(config.tls.keyFile);
  const server = (s: { passwordFile: string; caFile?: string }) => {
    s.passwordFile = at(s.passwordFile);
    if (s.caFile) s.caFile = at(s.caFile);
  };
  if (config.outbound?.defaultTransport) server(config.outbound.defaultTransport);
  for (const domain of config.domains) {
    for (const sender of domain.outbound?.senders ?? []) server(sender.server);
    for (const key of domain.outbound?.dkim ?? []) key.keyFile = at(key.keyFile);
    const { smtp, webhook } = domain.delivery;
    if (smtp?.passwordFile) smtp.passwordFile = at(smtp.passwordFile);
    if (smtp?.caFile) smtp.caFile = at(smtp.caFile);
    if (webhook) {
      webhook.hmacKeyFile = at(webhook.hmacKeyFile);
      if (webhook.caFile) webhook.caFile = at(webhook.caFile);
    }
  }
  return config;
}
