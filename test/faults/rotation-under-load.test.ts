// Hot reload under load: 100 credential rotations while four clients keep
// authenticating and sending. A rotation writes a new config in which the
// newest version is added and the oldest revoked (two stay Active). An AUTH
// with a version that was Active for the whole time the attempt was in flight
// must never fail; a message after a successful AUTH must reach the next hop.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { randomPassword, sha256 } from "../support/mail.js";
import { RawSmtp, startRelay, type RelayHarness } from "../support/relay.js";
import { recordFigures } from "./figures.js";

const rotations = 100;
const passwords = Array.from({ length: rotations + 3 }, () => randomPassword());
const username = (v: number) => `example.com-v${v}`;

describe("credential rotation under load", () => {
  let h: RelayHarness;
  before(async () => {
    h = await startRelay({
      domains: [
        {
          domain: "example.com",
          addresses: ["support@example.com"],
          credentials: [{ version: 1, username: username(1), password: passwords[1]! }],
        },
      ],
    });
  });
  after(() => h.stop());

  test(`${rotations} rotations while clients authenticate and send: no valid credential ever refused`, async () => {
    // Which versions are Active, and since/until when (ms timestamps), as written to the relay.
    const activeFrom = new Map<number, number>([[1, Date.now()]]);
    const activeUntil = new Map<number, number>();
    let safe = 1; // Active now and in the next config too
    const write = (newest: number) => {
      const at = Date.now();
      h.update((config) => {
        config.domains[0]!.credentials = [newest - 1, newest]
          .filter((v) => v >= 1)
          .map((v) => ({ version: v, username: username(v), passwordSha256: sha256(passwords[v]!), state: "Active" as const }));
        if (newest - 2 >= 1)
          config.domains[0]!.credentials.unshift({
            version: newest - 2,
            username: username(newest - 2),
            passwordSha256: sha256(passwords[newest - 2]!),
            state: "Revoked",
          });
      });
      activeFrom.set(newest, at);
      if (newest - 2 >= 1) activeUntil.set(newest - 2, at);
    };
    write(2);
    safe = 1;

    let stop = false;
    const attempts: { version: number; sent: number; replied: number; ok: boolean; reply: string }[] = [];
    let delivered = 0;
    const client = async () => {
      while (!stop) {
        const smtp = await RawSmtp.connect(h.implicitPort, { implicitTls: true });
        try {
          await smtp.reply();
          await smtp.command("EHLO load.test");
          const version = safe;
          const sent = Date.now();
          const reply = await smtp.authPlain(username(version), passwords[version]!);
          attempts.push({ version, sent, replied: Date.now(), ok: reply.startsWith("235"), reply });
          if (!reply.startsWith("235")) continue;
          if (!(await smtp.command("MAIL FROM:<jane@users.example.org>")).startsWith("250")) continue;
          if (!(await smtp.command("RCPT TO:<support@example.com>")).startsWith("250")) continue;
          await smtp.command("DATA");
          if ((await smtp.command(`Subject: load ${version}\r\n\r\nbody\r\n.`)).startsWith("250")) delivered++;
          await smtp.command("QUIT");
        } finally {
          smtp.close();
        }
      }
    };
    const clients = [client(), client(), client(), client()];
    for (let newest = 3; newest <= rotations + 2; newest++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      // Clients move to the version that stays Active across the next write.
      safe = newest - 1;
      await new Promise((resolve) => setTimeout(resolve, 50));
      write(newest);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    stop = true;
    await Promise.all(clients);

    // A failure counts against the relay only if its version was Active the whole time the attempt was in flight.
    const validThroughout = (a: (typeof attempts)[number]) =>
      (activeFrom.get(a.version) ?? Infinity) <= a.sent && (activeUntil.get(a.version) ?? Infinity) > a.replied;
    const wronglyRefused = attempts.filter((a) => !a.ok && validThroughout(a));
    const refusedRevoked = attempts.filter((a) => !a.ok && !validThroughout(a)).length;
    assert.deepEqual(
      wronglyRefused.map((a) => `v${a.version}: ${a.reply}`),
      [],
    );
    assert.ok(attempts.length > rotations * 2, `attempts: ${attempts.length}`);
    assert.ok(delivered > 0);
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(
      h.sink.messages().filter((m) => m.content.includes("Subject: load ")).length,
      delivered,
      "every message given 250 is at the next hop",
    );
    recordFigures("rotation-under-load", {
      scenario: `${rotations} rotations, one every 150 ms, each a new relay config with the newest version added and the oldest revoked, while 4 clients keep connecting (implicit TLS), authenticating with a version Active across the change, and sending.`,
      figures: {
        rotations,
        "AUTH attempts": attempts.length,
        "valid credentials refused": wronglyRefused.length,
        "refused with a version revoked while in flight": refusedRevoked,
        "messages given 250": delivered,
        "messages at the next hop": delivered,
      },
    });
  });
});
