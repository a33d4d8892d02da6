// Structured JSON logs (winston). Secrets never reach a log line: callers pass
// no passwords, and this format also blanks any field whose name says secret,
// as a second line of defence.
import winston from "winston";

const secretField = /pass(word)?|secret|token|authorization|hmac|key$/i;

const redact = winston.format((info) => {
  for (const field of Object.keys(info)) {
    if (secretField.test(field)) info[field] = "[redacted]";
  }
  return info;
});

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
    format: winston.format.combine(redact(), winston.format.timestamp(), winston.format.json()),
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
