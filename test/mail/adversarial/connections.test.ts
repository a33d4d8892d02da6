// Attack class: holding the relay's connection slots — many connections from
// one source, bare TCP connections that never start TLS, STARTTLS without a
// handshake, and talking forever before authenticating. Raw sockets from
// distinct loopback sources (127.0.0.0/8 is all on lo), each row one attack
// and what another client must still get.
import assert from "node:assert/strict";
import { Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { randomPassword } from "../../support/mail.js";
import { RawSmtp, exampleDomain, startRelay, type RelayHarness } from "../../support/relay.js";
import { eventuallyTrue } from "../../support/wait.js";

const password = randomPassword();
const limits = { maxConnectionsPerSource: 3, tlsHandshakeTimeoutSeconds: 1, maxUnauthenticatedCommands: 6, idleTimeoutSeconds: 60 };

/** A bare TCP connection that only records what it receives and when it closes. */
class Bare {
  text = "";
  closed = false;
  readonly socket: Socket;
  constructor(port: number, localAddress: string) {
    this.socket = new Socket().connect({ port, host: "127.0.0.1", localAddress });
    this.socket.on("data", (chunk: Buffer) => (this.text += chunk.toString("latin1")));
    this.socket.on("close", () => (this.closed = true));
    this.socket.on("error", () => undefined);
  }
  async connected(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.socket.once("connect", () => resolve());
      this.socket.once("error", reject);
    });
  }
}

describe("adversarial: connection slots", () => {
  let h: RelayHarness;
  const open: Bare[] = [];
  const bare = async (port: number, from: string) => {
    const b = new Bare(port, from);
    open.push(b);
    await b.connected();
    return b;
  };

  before(async () => {
    // A second domain offers AUTH LOGIN, whose username and password lines are not commands.
    const login = {
      domain: "login.example",
      addresses: ["support@login.example"],
      credentials: [{ version: 1, username: "login.example-v1", password }],
      authProtocol: "LOGIN" as const,
    };
    h = await startRelay({ domains: [exampleDomain(password), login], limits });
  });
  after(async () => {
    for (const b of open) b.socket.destroy();
    await h?.stop();
  });

  /** A full, legitimate session from `from`: the greeting, TLS, AUTH. */
  async function client(from: string, implicitTls = false): Promise<string> {
    const c = await RawSmtp.connect(implicitTls ? h.implicitPort : h.starttlsPort, { implicitTls, localAddress: from });
    try {
      const greeting = await c.reply();
      if (!greeting.startsWith("220")) return greeting;
      await c.command("EHLO client.test");
      if (!implicitTls) {
        await c.startTls();
        await c.command("EHLO client.test");
      }
      return await c.authPlain("example.com-v1", password);
    } finally {
      c.close();
    }
  }

  const within = (what: string, check: () => boolean, ms = 5_000) => eventuallyTrue(what, check, ms);

  const attacks: [string, () => Promise<void>][] = [
    [
      "one source opens more than its share of the STARTTLS listener",
      async () => {
        const held = await Promise.all([1, 2, 3].map(() => bare(h.starttlsPort, "127.0.0.2")));
        for (const b of held) await within("the greeting", () => b.text.startsWith("220"));
        const extra = await bare(h.starttlsPort, "127.0.0.2");
        await within("the extra connection refused", () => extra.closed);
        assert.match(extra.text, /^421 4\.7\.0 Too many connections from your address/);
        assert.match(await client("127.0.0.3"), /^235 /, "another source still gets in");
        held[0]!.socket.destroy();
        await within("a slot freed by a close", () => held[0]!.closed);
        await eventuallyTrue("the source gets in again", async () => /^235 /.test(await client("127.0.0.2")), 5_000);
      },
    ],
    [
      "one source holds implicit-TLS slots with bare TCP (no ClientHello)",
      async () => {
        const held = await Promise.all([1, 2, 3].map(() => bare(h.implicitPort, "127.0.0.4")));
        const extra = await bare(h.implicitPort, "127.0.0.4");
        await within("the extra connection closed before any handshake", () => extra.closed);
        assert.equal(extra.text, "");
        assert.ok(held.every((b) => !b.closed));
        assert.match(await client("127.0.0.5", true), /^235 /, "another source still gets in");
      },
    ],
    [
      "a bare TCP connection to the implicit-TLS listener that never sends a ClientHello",
      async () => {
        const started = Date.now();
        const b = await bare(h.implicitPort, "127.0.0.6");
        await within("closed at the handshake deadline, long before the idle timeout", () => b.closed);
        assert.ok(Date.now() - started >= limits.tlsHandshakeTimeoutSeconds * 1000 - 100, "not before the deadline");
      },
    ],
    [
      "STARTTLS, then no handshake",
      async () => {
        const b = await bare(h.starttlsPort, "127.0.0.7");
        await within("the greeting", () => b.text.startsWith("220"));
        b.socket.write("EHLO client.test\r\nSTARTTLS\r\n");
        await within("ready to start TLS", () => /220 Ready to start TLS/.test(b.text));
        await within("closed at the handshake deadline", () => b.closed);
      },
    ],
    [
      "commands forever before STARTTLS",
      async () => {
        const b = await bare(h.starttlsPort, "127.0.0.8");
        await within("the greeting", () => b.text.startsWith("220"));
        b.socket.write("EHLO client.test\r\n" + "NOOP\r\n".repeat(20));
        await within("closed by the command limit", () => b.closed);
        assert.match(b.text, /421 4\.7\.0 Too many commands before authentication/);
        // EHLO and the NOOPs up to the limit were answered, none after it.
        assert.equal((b.text.match(/^250 /gm) ?? []).length, limits.maxUnauthenticatedCommands);
      },
    ],
    [
      "commands forever after STARTTLS, before AUTH",
      async () => {
        const smtp = await RawSmtp.connect(h.starttlsPort, { localAddress: "127.0.0.9" });
        await smtp.reply();
        await smtp.command("EHLO client.test");
        await smtp.startTls();
        let reply = "";
        for (let i = 0; i < 20 && !reply.startsWith("421"); i++) reply = await smtp.command("NOOP");
        assert.match(reply, /^421 /);
        smtp.close();
      },
    ],
    [
      "AUTH with a mechanism the relay does not offer, forever (each a 504, never a failed login; found by review)",
      async () => {
        const smtp = await RawSmtp.connect(h.implicitPort, { implicitTls: true, localAddress: "127.0.0.12" });
        await smtp.reply();
        await smtp.command("EHLO client.test");
        let reply = "";
        let answered = 0;
        for (let i = 0; i < 30 && !reply.startsWith("421") && !smtp.closed; i++, answered++) reply = await smtp.command("AUTH FOO");
        assert.match(reply, /^421 /);
        assert.ok(answered <= limits.maxUnauthenticatedCommands + 1, `${answered} AUTH commands answered`);
        smtp.close();
      },
    ],
  ];
  for (const [attack, run] of attacks) test(attack, run);

  test("the refusals are counted by listener and reason", async () => {
    const metrics = await (await fetch(`http://127.0.0.1:${h.healthPort}/metrics`)).text();
    for (const [listener, reason] of [
      ["starttls", "PerSourceLimit"],
      ["implicitTls", "PerSourceLimit"],
      ["implicitTls", "HandshakeTimeout"],
      ["starttls", "HandshakeTimeout"],
      ["starttls", "TooManyCommands"],
    ]) {
      assert.match(metrics, new RegExp(`smtpc_relay_connections_refused_total\\{listener="${listener}",reason="${reason}"\\} [1-9]`));
    }
  });

  test("AUTH LOGIN's lines are not commands: two failed attempts and a third that succeeds, on one connection", async () => {
    const c = await RawSmtp.connect(h.starttlsPort, { localAddress: "127.0.0.11" });
    try {
      await c.reply();
      await c.command("EHLO client.test");
      await c.startTls();
      await c.command("EHLO client.test");
      const login = async (pass: string) => {
        await c.command("AUTH LOGIN");
        await c.command(Buffer.from("login.example-v1").toString("base64"));
        return c.command(Buffer.from(pass).toString("base64"));
      };
      assert.match(await login("wrong-1"), /^535 /);
      assert.match(await login("wrong-2"), /^535 /);
      assert.match(await login(password), /^235 /);
    } finally {
      c.close();
    }
  });

  test("legitimate sessions are not held back, and STARTTLS sessions give their slot back: more sequential sessions from one source than its limit", async () => {
    for (let i = 0; i < 5; i++) assert.match(await client("127.0.0.10"), /^235 /);
    assert.match(await client("127.0.0.10", true), /^235 /);
  });
});

describe("adversarial: connection slots behind a trusted load balancer (PROXY protocol)", () => {
  let h: RelayHarness;
  const open: Bare[] = [];
  before(async () => {
    h = await startRelay({ domains: [exampleDomain(password)], limits, proxyProtocol: { trustedRanges: ["127.0.0.50"] } });
  });
  after(async () => {
    for (const b of open) b.socket.destroy();
    await h?.stop();
  });
  const viaBalancer = async (client: string) => {
    const b = new Bare(h.starttlsPort, "127.0.0.50");
    open.push(b);
    await b.connected();
    b.socket.write(`PROXY TCP4 ${client} 127.0.0.1 40000 587\r\n`);
    await eventuallyTrue("an answer", () => b.text.length > 0 || b.closed, 5_000);
    return b;
  };

  test("the cap counts the client the PROXY header names, not the balancer", async () => {
    const held = await Promise.all([1, 2, 3].map(() => viaBalancer("198.51.100.7")));
    for (const b of held) assert.match(b.text, /^220 /);
    const extra = await viaBalancer("198.51.100.7");
    assert.match(extra.text, /^421 4\.7\.0 Too many connections from your address/);
    // The balancer carries other clients too: each has its own share.
    assert.match((await viaBalancer("198.51.100.8")).text, /^220 /);
  });
});
