// Nothing accepted is lost: a real Postfix (the customer's MX) relays a
// steady stream into the relay process while the relay is SIGKILLed and
// SIGTERMed mid-traffic and the next hop flaps (smtp-sink refusing RCPT,
// dropping the connection at DATA). Every message must reach the helpdesk at
// least once: a 250 from the relay means the next hop had it, anything else
// stays in Postfix's queue and is retried. Duplicates (the relay died after
// the next hop accepted but before its own 250 reached Postfix) are counted
// and reported; `npm run test:faults` puts the figures in docs/reliability.md.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import nodemailer from "nodemailer";
import {
  portOpen,
  randomPassword,
  relayConfig,
  selfSignedCertificate,
  startSmtpSink,
  stopChild,
  tempDir,
  writeRelayConfig,
  type SmtpSink,
} from "../support/mail.js";
import { startSubmissionServer, type Postfix } from "../support/postfix.js";
import { eventuallyTrue } from "../support/wait.js";
import type { RelayConfig } from "../../relay/contract/config.js";
import { recordFigures } from "./figures.js";

const messages = Number(process.env.SMTPC_FAULT_MESSAGES ?? 240);
const password = randomPassword();

describe("relay faults under load from Postfix", () => {
  let helpdesk: SmtpSink;
  let refusing: SmtpSink;
  let dropping: SmtpSink;
  let unused: SmtpSink;
  let postfix: Postfix;
  let relay: ChildProcess | undefined;
  let config: RelayConfig;
  let configFile: string;
  const events: string[] = [];

  const startRelayProcess = async () => {
    relay = spawn(process.execPath, ["--import", "tsx", "relay/main.ts", "--config", configFile], {
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, LOG_LEVEL: "error" },
    });
    await eventuallyTrue("the relay listening", () => portOpen(config.listeners.starttls!.port), 15_000);
  };
  const nextHop = (port: number) => {
    config.domains[0]!.delivery = { smtp: { host: "127.0.0.1", port, protocol: "SMTP", tls: "None" } };
    writeRelayConfig(configFile, config);
  };

  before(async () => {
    helpdesk = await startSmtpSink();
    refusing = await startSmtpSink(["-r", "RCPT"]);
    dropping = await startSmtpSink(["-q", "DATA"]);
    unused = await startSmtpSink();
    const dir = tempDir("faults");
    config = await relayConfig({
      dir,
      tls: await selfSignedCertificate(dir),
      sinkPort: helpdesk.port,
      domains: [
        { domain: "example.com", addresses: ["support@example.com"], credentials: [{ version: 1, username: "example.com-v1", password }] },
      ],
      limits: { nextHopTimeoutSeconds: 5 },
    });
    configFile = join(dir, "relay.yaml");
    writeRelayConfig(configFile, config);
    await startRelayProcess();
    postfix = await startSubmissionServer({
      relayTo: unused.port,
      users: [],
      forward: { domain: "example.com", relayPort: config.listeners.starttls!.port, username: "example.com-v1", password },
    });
    // Retry deferred mail within seconds, as a test needs (production keeps Postfix's minutes).
    await postfix.reconfigure({
      minimal_backoff_time: "1s",
      maximal_backoff_time: "2s",
      queue_run_delay: "1s",
      smtp_connect_timeout: "5s",
    });
  });
  after(async () => {
    if (relay) await stopChild(relay);
    await postfix?.stop();
    for (const sink of [helpdesk, refusing, dropping, unused]) await sink?.stop();
  });

  test(`${messages} messages, the relay killed twice and stopped once, the next hop flapping: none lost`, async () => {
    const client = nodemailer.createTransport({
      host: "127.0.0.1",
      port: postfix.port,
      secure: false,
      ignoreTLS: true,
      pool: true,
      maxConnections: 4,
    });
    const started = Date.now();
    const subject = (i: number) => `fault-${i}-${started}`;
    const sends: Promise<string | undefined>[] = [];
    const faults = (async () => {
      const at = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, started + ms - Date.now())));
      await at(1_500);
      relay!.kill("SIGKILL");
      events.push("SIGKILL");
      await stopChild(relay!);
      await at(3_000);
      await startRelayProcess();
      await at(4_500);
      nextHop(refusing.port);
      events.push("next hop refuses RCPT (4xx)");
      await at(6_000);
      nextHop(dropping.port);
      events.push("next hop drops the connection at DATA");
      await at(7_500);
      nextHop(helpdesk.port);
      await at(8_500);
      relay!.kill("SIGTERM");
      events.push("SIGTERM");
      await stopChild(relay!);
      await startRelayProcess();
      await at(10_000);
      relay!.kill("SIGKILL");
      events.push("SIGKILL");
      await stopChild(relay!);
      await startRelayProcess();
    })();
    // Steady load: about 20 messages a second into the customer's MX.
    for (let i = 0; i < messages; i++) {
      const raw = `From: jane@users.example.org\r\nTo: support@example.com\r\nSubject: ${subject(i)}\r\nMessage-ID: <${subject(i)}@users.example.org>\r\n\r\nbody ${i}\r\n`;
      // Settled at once: a refusal is a result to count, not an unhandled rejection.
      sends.push(
        client.sendMail({ envelope: { from: "jane@users.example.org", to: ["support@example.com"] }, raw }).then(
          () => undefined,
          (error: Error) => error.message,
        ),
      );
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const refusals = (await Promise.all(sends)).filter((r): r is string => r !== undefined);
    const accepted = messages - refusals.length;
    client.close();
    await faults;
    assert.deepEqual(refusals.slice(0, 3), [], "Postfix accepted every message from the load client");

    // Drain: Postfix retries what the relay did not accept; everything reaches the helpdesk.
    const delivered = () => {
      const seen = new Map<string, number>();
      for (const m of helpdesk.messages()) {
        const s = /^Subject: (fault-\d+-\d+)$/m.exec(m.content)?.[1];
        if (s) seen.set(s, (seen.get(s) ?? 0) + 1);
      }
      return seen;
    };
    await eventuallyTrue(
      "every message at the helpdesk and Postfix's queue empty",
      async () => {
        await postfix.flush();
        return delivered().size === messages && (await postfix.queued()) === 0;
      },
      120_000,
    );
    const seen = delivered();
    const lost = Array.from({ length: messages }, (_, i) => subject(i)).filter((s) => !seen.has(s));
    const duplicates = [...seen.values()].reduce((n, c) => n + c - 1, 0);
    const drained = (Date.now() - started) / 1000;
    assert.deepEqual(lost, [], "no message lost");
    // The faults hit traffic: Postfix had to keep and retry messages.
    const deferred = (postfix.log().match(/status=deferred/g) ?? []).length;
    assert.ok(deferred > 0, "some deliveries were deferred by the faults");
    // Relayed by the relay only after the next hop accepted: every copy carries the relay's trust tag.
    assert.ok(
      helpdesk
        .messages()
        .filter((m) => m.content.includes("Subject: fault-"))
        .every((m) => /X-SmtpConnector-Auth: domain=example\.com; version=1/.test(m.content)),
    );

    recordFigures("relay-under-faults", {
      scenario: `A real Postfix (the customer's MX) relays ${messages} messages at about 20/s into the relay process (STARTTLS, AUTH); the relay is SIGKILLed twice and SIGTERMed once mid-traffic, and the next hop refuses RCPT (4xx), then drops the connection at DATA, for 1.5 s each. Postfix retries every deferral after 1-2 s.`,
      figures: {
        messages,
        "accepted by Postfix": accepted,
        "deliveries deferred and retried by Postfix": deferred,
        lost: lost.length,
        "duplicates at the helpdesk": duplicates,
        "seconds until all delivered and Postfix's queue empty": drained.toFixed(1),
      },
      events,
    });
  });
});
