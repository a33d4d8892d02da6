// `npm run relay -- --config FILE`: one relay process, as a relay pod runs it.
import { parseArgs } from "node:util";
import { ConfigError } from "./contract/config-parser.js";
import { createLogger } from "../lib/log.js";
import { Relay } from "./relay.js";

const usage = "usage: relay --config FILE";

function configPath(): string {
  try {
    const { values } = parseArgs({ options: { config: { type: "string" } }, strict: true });
    if (!values.config) throw new Error("--config is required");
    return values.config;
  } catch (error) {
    console.error(`relay: ${(error as Error).message}\n${usage}`);
    process.exit(2);
  }
}

const log = createLogger("relay");
let relay: Relay;
try {
  relay = new Relay(configPath(), log);
  await relay.start();
} catch (error) {
  log.error(
    "relay failed to start",
    error instanceof ConfigError ? { file: error.file, problems: error.problems } : { error: (error as Error).message },
  );
  process.exit(1);
}

let stopping = false;
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    log.info("signal received, draining", { signal });
    relay.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error("unclean stop", { error: String(error) });
        process.exit(1);
      },
    );
  });
}
