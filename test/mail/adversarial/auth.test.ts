// Attack class: authentication — guessing passwords, locking the real client
// out, acting as another identity, and getting secrets into the logs. Raw
// socket clients from distinct loopback sources (127.0.0.0/8 is all on lo):
// each row of a table is one attacker and what the others must still get.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { controlRequest } from "../../../operator/address/control-client.js";
import { freePort, randomPassword, sha256 } from "../../support/mail.js";
import { RawSmtp, exampleDomain, startRelay, type RelayHarness } from "../../support/relay.js";

const inbound = { username: "example.com-v1", password: randomPassword() };
const submission = { username: "helpdesk-example.com-v1", password: randomPassword() };
const controlToken = randomPassword();
const limits = {
  perConnection: 3,
  delayMs: 1,
  lockoutThreshold: 6,
  usernameLockoutThreshold: 3,
  lockoutWindowSeconds: 60,
  lockoutSeconds: 60,
};

type Listener = "inbound" | "submission";
interface Attempt {
  from: string;
  listener: Listener;
  username: string;
  password: string;
  /** Raw AUTH PLAIN authzid; empty (none) when omitted. */
  authzid?: string;
}

/** A relay with both kinds of listener and the control API; each describe gets its own (a lockout never crosses them). */
function relayFor(): { h: () => RelayHarness; auth: (a: Attempt) => Promise<string> } {
  let h: RelayHarness;
  before(async () => {
    h = await startRelay({
      domains: [exampleDomain(inbound.password)],
      authFailures: limits,
      configure: async (config) => {
        config.listeners.submission = { port: await freePort() };
        config.listeners.control = { port: await freePort(), tokenSha256: sha256(controlToken) };
        config.outbound = { systemDomains: ["helpdesk.test"], unconnectedSenders: "Refuse" };
        config.domains[0]!.outbound = {
          submission: [{ version: 1, username: submission.username, passwordSha256: sha256(submission.password), state: "Active" }],
          dkim: [],
          senders: [],
        };
      },
    });
  });
  after(() => h?.stop());

  /** One AUTH PLAIN on a fresh connection from `from`: inbound over implicit TLS, submission after STARTTLS. */
  async function auth(a: Attempt): Promise<string> {
    const client =
      a.listener === "inbound"
        ? await RawSmtp.connect(h.implicitPort, { implicitTls: true, localAddress: a.from })
        : await RawSmtp.connect(h.submissionPort!, { localAddress: a.from });
    try {
      await client.reply();
      await client.command("EHLO client.test");
      if (a.listener === "submission") {
        await client.startTls();
        await client.command("EHLO client.test");
      }
      return await client.command(`AUTH PLAIN ${Buffer.from(`${a.authzid ?? ""}\0${a.username}\0${a.password}`).toString("base64")}`);
    } finally {
      client.close();
    }
  }
  return { h: () => h, auth };
}

const right = (from: string, listener: Listener = "inbound"): Attempt => ({
  from,
  listener,
  ...(listener === "inbound" ? inbound : submission),
});
const wrong = (from: string, username = inbound.username, listener: Listener = "inbound"): Attempt => ({
  from,
  listener,
  username,
  password: "wrong-guess",
});

describe("adversarial: authentication, brute force and lockouts", () => {
  const { h, auth } = relayFor();

  // [attack, the failures it makes, then [attempt, expected reply code] that must hold]
  const lockouts: [string, Attempt[], [Attempt, string][]][] = [
    [
      "a third party fails the real username from its own address",
      Array.from({ length: limits.lockoutThreshold + 2 }, () => wrong("127.0.0.2")),
      [
        [right("127.0.0.1"), "235"], // the real client is not denied
        [wrong("127.0.0.2"), "454"], // the attacker is limited
      ],
    ],
    [
      "a third party on the real client's own address (a shared egress pool) fails the real username",
      Array.from({ length: limits.lockoutThreshold + 2 }, () => wrong("127.0.0.7")),
      [
        [wrong("127.0.0.7"), "454"], // the source is locked out for failures
        [right("127.0.0.7"), "235"], // but the real client there, with the right password, is not denied (found by review)
      ],
    ],
    [
      "one source sprays usernames",
      Array.from({ length: limits.lockoutThreshold }, (_, i) => wrong("127.0.0.3", `guess-${i}`)),
      [
        [wrong("127.0.0.3", "guess-next"), "454"],
        [right("127.0.0.3"), "235"],
        [right("127.0.0.1"), "235"],
      ],
    ],
    [
      "one username from one source: that pair is locked before the whole source",
      Array.from({ length: limits.usernameLockoutThreshold }, () => wrong("127.0.0.4")),
      [
        [wrong("127.0.0.4"), "454"],
        [wrong("127.0.0.4", "another-user"), "535"],
        [right("127.0.0.4", "submission"), "235"],
        [right("127.0.0.4"), "235"], // a success forgives the pair
        [wrong("127.0.0.4"), "535"],
      ],
    ],
    [
      "a source locked out on the inbound listeners keeps its submission clients",
      Array.from({ length: limits.lockoutThreshold }, (_, i) => wrong("127.0.0.5", `stale-${i}`)),
      [
        [wrong("127.0.0.5"), "454"],
        [right("127.0.0.5", "submission"), "235"],
      ],
    ],
    [
      "a source locked out on submission keeps its inbound clients",
      Array.from({ length: limits.lockoutThreshold }, (_, i) => wrong("127.0.0.6", `helpdesk-${i}`, "submission")),
      [
        [wrong("127.0.0.6", "helpdesk-x", "submission"), "454"],
        [right("127.0.0.6"), "235"],
      ],
    ],
  ];
  for (const [attack, failures, probes] of lockouts) {
    test(`lockout: ${attack}`, async () => {
      for (const failure of failures) {
        const reply = await auth(failure);
        assert.match(reply, /^(535|421|454) /, `${failure.from} ${failure.username}: ${reply}`);
      }
      for (const [attempt, code] of probes) {
        const reply = await auth(attempt);
        assert.equal(reply.slice(0, 3), code, `${attempt.listener} AUTH from ${attempt.from} as ${attempt.username}: ${reply}`);
      }
    });
  }

  // Reads the lockouts the rows above caused.
  test("lockouts are visible: a metric per listener kind, and the control API's report, by credential version, never the username", async () => {
    const metrics = await (await fetch(`http://127.0.0.1:${h().healthPort}/metrics`)).text();
    assert.match(
      metrics,
      /smtpc_relay_auth_lockouts_total\{kind="inbound",domain="example\.com",version="1",scope="UsernameAndSource"\} [1-9]/,
    );
    assert.match(metrics, /smtpc_relay_auth_lockouts_total\{kind="submission",domain="",version="",scope="Source"\} [1-9]/);
    assert.match(metrics, /smtpc_relay_auth_lockouts_active\{kind="inbound",scope="Source"\} [1-9]/);
    const response = await controlRequest(`https://127.0.0.1:${h().controlPort}/v1/credential-use`, {
      headers: { authorization: `Bearer ${controlToken}` },
      pins: [new X509Certificate(readFileSync(h().config.tls.certFile)).fingerprint256],
    });
    assert.equal(response.status, 200);
    const body = await response.json();
    const text = JSON.stringify(body);
    const { lockouts } = body as {
      lockouts: { kind: string; scope: string; source: string; domain?: string; version?: number; until: string }[];
    };
    const own = lockouts.find((l) => l.source === "127.0.0.2" && l.scope === "UsernameAndSource");
    assert.ok(own, text);
    assert.equal(own.kind, "inbound");
    assert.equal(own.domain, "example.com");
    assert.equal(own.version, 1);
    assert.ok(Date.parse(own.until) > Date.now());
    assert.ok(
      lockouts.some((l) => l.source === "127.0.0.6" && l.kind === "submission" && l.scope === "Source"),
      text,
    );
    for (const secret of [inbound.username, "guess-", "stale-", "wrong-guess"])
      assert.ok(!text.includes(secret), `${secret} in the report`);
  });
});

describe("adversarial: authentication, identities and what the logs say", () => {
  const { h, auth } = relayFor();

  // [case, AUTH PLAIN authzid and authcid, expected reply code] — RFC 4616: another authzid fails.
  const identities: [string, Attempt, string][] = [
    ["no authzid", { ...right("127.0.0.10") }, "235"],
    ["authzid equal to the authcid", { ...right("127.0.0.10"), authzid: inbound.username }, "235"],
    ["authzid of another identity, right password", { ...right("127.0.0.11"), authzid: "someone-else" }, "535"],
    ["authzid of another credential, right password", { ...right("127.0.0.12", "submission"), authzid: "example.com-v1" }, "535"],
  ];
  for (const [name, attempt, code] of identities) {
    test(`AUTH PLAIN, ${name} → ${code}`, async () => {
      const reply = await auth(attempt);
      assert.equal(reply.slice(0, 3), code, reply);
    });
  }

  test("a refused username is never logged as typed: its credential version, or a length and keyed digest", async () => {
    const typedPassword = `pw-in-username-${randomPassword()}`;
    assert.match(await auth(wrong("127.0.0.20", typedPassword)), /^535 /);
    assert.match(await auth(wrong("127.0.0.21")), /^535 /);
    const refused = h().logs.filter((l) => l.includes('"AUTH refused"'));
    assert.ok(!h().logs.some((l) => l.includes(typedPassword)), "the typed string reached a log line");
    const unknown = refused.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.remote === "127.0.0.20");
    assert.equal(unknown?.usernameLength, typedPassword.length);
    assert.match(String(unknown?.usernameDigest), /^[0-9a-f]{12}$/);
    const known = refused.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.remote === "127.0.0.21");
    assert.equal(known?.domain, "example.com");
    assert.equal(known?.credentialVersion, 1);
    assert.ok(!h().logs.some((l) => /"username"/.test(l)), "a username field in the logs");
  });
});
