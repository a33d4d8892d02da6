// Structured JSON logs (winston). Secrets never reach a log line: callers pass
// no passwords, and this format also blanks any field whose name says secret,
// as a second line of defence.
import winston from "winston";

const secretField = /pass(word)?|secret|token|authorization|hmac|key$/i;

/** triple-beam's MESSAGE: the finished line a winston transport writes. */
const line = Symbol.for("message");

/**
 * One JSON object per line: timestamp, level and message first, then the
 * component and the caller's fields, secret-named ones blanked. One pass and
 * the native JSON.stringify: logform's redact → timestamp → json chain (its
 * key-sorting safe-stable-stringify) cost about three times as much, a
 * twentieth of the relay's CPU per message at one line per message. Only a
 * value JSON cannot take (a BigInt, a cycle) takes the slower, safe path.
 */
const jsonLine = winston.format((info) => {
  const entry: Record<string, unknown> = { timestamp: new Date().toISOString(), level: info.level, message: info.message };
  for (const field of Object.keys(info)) {
    if (field !== "level" && field !== "message") entry[field] = secretField.test(field) ? "[redacted]" : info[field];
  }
  let text: string;
  try {
    text = JSON.stringify(entry);
  } catch {
    text = safeJson(entry);
  }
  (info as Record<symbol, unknown>)[line] = text;
  return info;
});

function safeJson(entry: Record<string, unknown>): string {
  // Only an object's own ancestors make a cycle: one object named twice side by side prints twice.
  const ancestors: unknown[] = [];
  return JSON.stringify(entry, function (this: unknown, _key: string, value: unknown) {
    if (typeof value === "bigint") return value.toString();
    if (typeof value !== "object" || value === null) return value;
    while (ancestors.length > 0 && ancestors.at(-1) !== this) ancestors.pop();
    if (ancestors.includes(value)) return "[Circular]";
    ancestors.push(value);
    return value;
  });
}

export type Logger = winston.Logger;

export interface LoggerOptions {
  level?: string;
  /** Where the JSON lines go; standard error when omitted. */
  stream?: NodeJS.WritableStream;
}

export function createLogger(component: string, options: LoggerOptions = {}): Logger {
  const transport = options.stream
    ? new winston.transports.Stream({ stream: options.stream })
    : new winston.transports.Console({ stderrLevels: ["error", "warn", "info", "debug"] });
  const logger = winston.createLogger({
    level: options.level ?? process.env.LOG_LEVEL ?? "info",
    defaultMeta: { component },
    format: jsonLine(),
    transports: [transport],
  });
  // winston runs every call through its streams and formats before a
  // transport drops it for its level: drop disabled levels at the call (a
  // debug line per SMTP command must cost nothing at the default level).
  const methods = logger as unknown as Record<string, winston.LeveledLogMethod>;
  for (const level of Object.keys(logger.levels)) {
    const write = methods[level]!.bind(logger);
    methods[level] = ((...args: Parameters<winston.LeveledLogMethod>) =>
      logger.isLevelEnabled(level) ? write(...args) : logger) as winston.LeveledLogMethod;
  }
  return logger;
}
