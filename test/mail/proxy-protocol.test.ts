// The PROXY protocol against the running relay, from raw sockets: version 1
// (GCP's TCP proxy) and version 2 (AWS NLB) header bytes from a trusted
// balancer (127.0.0.50, on lo), on both listeners; the client they name is the
// one the per-source cap counts and the Received header shows. From anywhere
// else a header is refused, and a malformed one from the balancer closes the
// connection. smtp-server 3.21.6 alone answered a valid version 2 header with
// "* BAD Invalid PROXY header".
import assert from "node:assert/strict";
import { Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { after, before, describe, test } from "node:test";
import { freePort, randomPassword } from "../support/mail.js";
import { proxyV2 } from "../support/proxy-protocol.js";
import { exampleDomain, startRelay, type RelayHarness } from "../support/relay.js";
import { eventuallyTrue } from "../support/wait.js";

const password = randomPassword();
const balancer = "127.0.0.50";
const limits = { maxConnectionsPerSource: 2, tlsHandshakeTimeoutSeconds: 2 };

/** A connection that records what it receives; it speaks first with whatever bytes the test gives it. */
class Peer {
  text = "";
  closed = false;
  private constructor(readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => (this.text += chunk.toString("latin1")));
    socket.on("close", () => (this.closed = true));
    socket.on("error", () => undefined);
  }
  static async open(port: number, from: string): Promise<Peer> {
    const socket = new Socket().connect({ port, host: "127.0.0.1", localAddress: from });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", () => resolve());
      socket.once("error", reject);
    });
    return new Peer(socket);
  }
  async answer(pattern: RegExp = /\r\n/): Promise<string> {
    await eventuallyTrue(`an answer matching ${pattern}`, () => pattern.test(this.text) || this.closed, 5_000);
    return this.text;
  }
  async send(line: string, expect: RegExp): Promise<string> {
    const before = this.text.length;
    this.socket.write(`${line}\r\n`);
    await eventuallyTrue(`a reply to ${line}`, () => expect.test(this.text.slice(before)) || this.closed, 5_000);
    return this.text.slice(before);
  }
}

const v1 = (client: string) =>
  Buffer.from(`PROXY ${client.includes(":") ? "TCP6" : "TCP4"} ${client} ${client.includes(":") ? "::1" : "127.0.0.1"} 40000 587\r\n`);
const v2 = (client: string) =>
  proxyV2({ source: client, sourcePort: 40000, destination: client.includes(":") ? "::1" : "127.0.0.1", destinationPort: 587 });
/** STARTTLS, AUTH and one message on a peer that has its greeting. */
async function deliver(peer: Peer, subject: string): Promise<void> {
  await peer.send("EHLO client.test", /^250 /m);
  await peer.send("STARTTLS", /^220 /m);
  const secure = tlsConnect({ socket: peer.socket, rejectUnauthorized: false, servername: "relay.test" });
  await new Promise<void>((resolve, reject) => secure.once("secureConnect", () => resolve()).once("error", reject));
  let text = "";
  secure.on("data", (c: Buffer) => (text += c.toString("latin1")));
  const say = async (line: string, expect: RegExp) => {
    const from = text.length;
    secure.write(`${line}\r\n`);
    await eventuallyTrue(`a reply to ${line.slice(0, 12)}`, () => expect.test(text.slice(from)), 5_000);
  };
  await say("EHLO client.test", /^250 /m);
  await say(`AUTH PLAIN ${Buffer.from(`\0example.com-v1\0${password}`).toString("base64")}`, /^235 /m);
  await say("MAIL FROM:<customer@users.example.org>", /^250 /m);
  await say("RCPT TO:<support@example.com>", /^250 /m);
  await say("DATA", /^354 /m);
  await say(`Subject: ${subject}\r\n\r\nhello\r\n.`, /^250 /m);
  secure.destroy();
}
const delivered = async (h: RelayHarness, subject: string) => {
  await eventuallyTrue("the message at the next hop", () => h.sink.messages().some((m) => m.content.includes(subject)), 5_000);
  return h.sink.messages().find((m) => m.content.includes(subject))!.content;
};
const sessionFrom = (h: RelayHarness, client: string) =>
  h.logs.some((l) => l.includes('"session opened"') && l.includes(`"remote":"${client}"`));
const refusals = async (h: RelayHarness, reason: string) => {
  const text = await h.relay.metrics.registry.getSingleMetricAsString("smtpc_relay_connections_refused_total");
  // Summed over the listeners.
  return [...text.matchAll(new RegExp(`reason="${reason}"[^}]*} (\\d+)`, "g"))].reduce((sum, m) => sum + Number(m[1]), 0);
};

/**
 * Registers, in the describe() that calls it, the relay `start` makes before its tests, stopped after them once every
 * peer opened through the balancer is closed; resolves to the opener: the header first, on the STARTTLS port unless told.
 */
function behindBalancer(start: () => Promise<RelayHarness>) {
  let h: RelayHarness | undefined;
  const open: Peer[] = [];
  before(async () => {
    h = await start();
  });
  after(async () => {
    for (const p of open) p.socket.destroy();
    await h?.stop();
  });
  return async (header: Buffer, port = h!.starttlsPort) => {
    const peer = await Peer.open(port, balancer);
    open.push(peer);
    peer.socket.write(header);
    return peer;
  };
}

describe("PROXY protocol from a trusted balancer", () => {
  let h: RelayHarness;
  const viaBalancer = behindBalancer(
    async () => (h = await startRelay({ domains: [exampleDomain(password)], limits, proxyProtocol: { trustedRanges: ["127.0.0.48/29"] } })),
  );

  for (const [version, header] of [
    ["1", v1],
    ["2", v2],
  ] as const) {
    test(`version ${version}: the session is the named client's, IPv4 and IPv6`, async () => {
      for (const client of version === "1" ? ["203.0.113.11", "2001:db8::11"] : ["203.0.113.12", "2001:db8::12"]) {
        const peer = await viaBalancer(header(client));
        assert.match(await peer.answer(), /^220 /);
        assert.match(await peer.send("EHLO client.test", /^250 /m), /STARTTLS/);
        await eventuallyTrue(`a session of ${client}`, () => sessionFrom(h, client), 2_000);
        peer.socket.destroy();
      }
    });
  }

  test("version 2, the header arriving a byte at a time, then a whole message: the Received header names the client", async () => {
    const peer = await viaBalancer(Buffer.alloc(0));
    for (const byte of v2("198.51.100.23")) {
      peer.socket.write(Buffer.from([byte]));
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    assert.match(await peer.answer(), /^220 /);
    await deliver(peer, "via a balancer");
    assert.match(await delivered(h, "via a balancer"), /^Received: from client\.test \(\[198\.51\.100\.23\]\)/m);
  });

  test("IPv4-mapped IPv6 clients (HAProxy on a dual-stack bind): each its own IPv4 source, and the dotted address in Received:", async () => {
    // The 16 address bytes of ::ffff:198.51.100.70 and ::ffff:198.51.100.71 (family 0x21, TCP over IPv6).
    const mapped = (last: number) =>
      proxyV2({ source: `::ffff:c633:64${last.toString(16)}`, sourcePort: 40000, destination: "::1", destinationPort: 587 });
    const held = await Promise.all([1, 2].map(() => viaBalancer(mapped(70))));
    for (const p of held) assert.match(await p.answer(), /^220 /);
    // Not the IPv6 /64 ::/64 that every mapped client would share: another mapped client has its own share.
    const other = await viaBalancer(mapped(71));
    assert.match(await other.answer(), /^220 /);
    await eventuallyTrue("a session of 198.51.100.71", () => sessionFrom(h, "198.51.100.71"), 2_000);
    await deliver(other, "from a mapped client");
    assert.match(await delivered(h, "from a mapped client"), /^Received: from client\.test \(\[198\.51\.100\.71\]\)/m);
    // Version 1 from the same kind of balancer writes it uncompressed.
    const v1Mapped = await viaBalancer(Buffer.from("PROXY TCP6 0:0:0:0:0:ffff:c633:6448 ::1 40000 587\r\n"));
    assert.match(await v1Mapped.answer(), /^220 /);
    await eventuallyTrue("a session of 198.51.100.72", () => sessionFrom(h, "198.51.100.72"), 2_000);
    for (const p of [...held, v1Mapped]) p.socket.destroy();
  });

  test("version 2 on the implicit-TLS listener: the header, then the handshake", async () => {
    const peer = await viaBalancer(v2("203.0.113.30"), h.implicitPort);
    const secure = tlsConnect({ socket: peer.socket, rejectUnauthorized: false, servername: "relay.test" });
    let text = "";
    secure.on("data", (c: Buffer) => (text += c.toString("latin1")));
    await new Promise<void>((resolve, reject) => secure.once("secureConnect", () => resolve()).once("error", reject));
    await eventuallyTrue("the greeting over TLS", () => /^220 /.test(text), 5_000);
    await eventuallyTrue("a session of 203.0.113.30", () => sessionFrom(h, "203.0.113.30"), 2_000);
    secure.destroy();
  });

  test("the per-source cap counts the client the version 2 header names, not the balancer", async () => {
    const held = await Promise.all([1, 2].map(() => viaBalancer(v2("198.51.100.7"))));
    for (const p of held) assert.match(await p.answer(), /^220 /);
    assert.match(await (await viaBalancer(v2("198.51.100.7"))).answer(), /^421 4\.7\.0 Too many connections from your address/);
    // The balancer carries other clients too: each has its own share.
    assert.match(await (await viaBalancer(v2("198.51.100.8"))).answer(), /^220 /);
    for (const p of held) p.socket.destroy();
  });

  test("implicit TLS: the client the header names is counted before the handshake, so it cannot hold the pending slots", async () => {
    const before = await refusals(h, "PerSourceLimit");
    // Headers and nothing more: no ClientHello. Two are the client's share; the third is refused at once, not at the handshake deadline.
    const held = await Promise.all([1, 2].map(() => viaBalancer(v2("198.51.100.60"), h.implicitPort)));
    const third = await viaBalancer(v2("198.51.100.60"), h.implicitPort);
    await eventuallyTrue("the third closed", () => third.closed, limits.tlsHandshakeTimeoutSeconds * 1000 - 500);
    assert.equal(third.text, "");
    assert.equal(await refusals(h, "PerSourceLimit"), before + 1);
    assert.equal(
      held.some((p) => p.closed),
      false,
    );
    for (const p of held) p.socket.destroy();
  });

  test("LOCAL (the balancer's health check) is served as the balancer's own connection", async () => {
    const peer = await viaBalancer(proxyV2({ command: "LOCAL" }));
    assert.match(await peer.answer(), /^220 /);
    await eventuallyTrue("a session of the balancer", () => sessionFrom(h, balancer), 2_000);
    peer.socket.destroy();
  });

  test("clients the balancer cannot name (v1 UNKNOWN, v2 UNSPEC) have a count of their own: they cannot use up the balancer's share (its LOCAL health checks)", async () => {
    const unknown = [Buffer.from("PROXY UNKNOWN\r\n"), proxyV2({ family: 0x00 })];
    const held = await Promise.all(unknown.map((header) => viaBalancer(header)));
    for (const p of held) assert.match(await p.answer(), /^220 /);
    assert.match(
      await (await viaBalancer(Buffer.from("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"))).answer(),
      /^421 4\.7\.0 Too many connections from your address/,
    );
    // The balancer's own connections are counted apart: both of its share are still there.
    const checks = await Promise.all([1, 2].map(() => viaBalancer(proxyV2({ command: "LOCAL" }))));
    for (const p of checks) assert.match(await p.answer(), /^220 /);
    for (const p of [...held, ...checks]) p.socket.destroy();
  });

  test("malformed: a datagram header, a bad version 1 line, no header at all: 421 and closed, never a session", async () => {
    const before = await refusals(h, "ProxyHeaderInvalid");
    for (const bytes of [
      proxyV2({ source: "203.0.113.40", sourcePort: 1, destination: "127.0.0.1", destinationPort: 587, family: 0x12 }),
      Buffer.from("PROXY TCP4 203.0.113.41 127.0.0.1 99999 587\r\n"),
      Buffer.from("EHLO straight.from.the.balancer\r\n"),
    ]) {
      const peer = await viaBalancer(bytes);
      assert.match(await peer.answer(), /^421 4\.7\.0 Invalid PROXY header/);
      await eventuallyTrue("closed", () => peer.closed, 3_000);
    }
    assert.equal(await refusals(h, "ProxyHeaderInvalid"), before + 3);
    assert.equal(sessionFrom(h, "203.0.113.40") || sessionFrom(h, "203.0.113.41"), false);
  });

  test("a balancer that connects and sends nothing is closed at the handshake deadline", async () => {
    const peer = await viaBalancer(Buffer.alloc(0));
    await eventuallyTrue("closed", () => peer.closed, limits.tlsHandshakeTimeoutSeconds * 1000 + 3_000);
    assert.equal(peer.text, "");
  });
});

describe("PROXY protocol on the implicit-TLS listener, near maxConnections", () => {
  let h: RelayHarness;
  const via = behindBalancer(
    async () =>
      (h = await startRelay({
        domains: [exampleDomain(password)],
        limits: { maxConnectionsPerSource: 1, maxConnections: 3, tlsHandshakeTimeoutSeconds: 10 },
        proxyProtocol: { trustedRanges: [balancer] },
      })),
  );

  test("one client behind the balancer holding silent connections does not lock every other client out", async () => {
    const viaBalancer = (client: string) => via(v2(client), h.implicitPort);
    // Before the fix these three all stayed open (uncounted until a handshake that never comes) and filled the
    // listener's pending slots: the next connection, anyone's, was dropped for tlsHandshakeTimeoutSeconds.
    const silent = [await viaBalancer("198.51.100.7"), await viaBalancer("198.51.100.7"), await viaBalancer("198.51.100.7")];
    await eventuallyTrue("all but the client's one connection closed", () => silent.filter((p) => p.closed).length === 2, 5_000);
    const peer = await viaBalancer("203.0.113.9");
    const secure = tlsConnect({ socket: peer.socket, rejectUnauthorized: false, servername: "relay.test" });
    secure.on("error", () => undefined);
    let text = "";
    secure.on("data", (c: Buffer) => (text += c.toString("latin1")));
    await eventuallyTrue("the other client's greeting over TLS", () => /^220 /.test(text) || peer.closed, 5_000);
    assert.match(text, /^220 /);
    secure.destroy();
  });
});

describe("PROXY protocol: the named client against allowedClients (the domain's allowedSourceRanges)", () => {
  let h: RelayHarness;
  const viaBalancer = behindBalancer(
    async () =>
      (h = await startRelay({
        domains: [exampleDomain(password)],
        limits,
        proxyProtocol: { trustedRanges: [balancer], allowedClients: ["198.51.100.0/24", "2001:db8:1::/48"] },
      })),
  );

  test("a client inside is served; outside (v1, v2, IPv4-mapped, IPv6) gets 554 and no session, or on implicit TLS is closed; each counted", async () => {
    for (const client of ["198.51.100.5", "2001:db8:1::5"]) {
      const peer = await viaBalancer(v2(client));
      assert.match(await peer.answer(), /^220 /, client);
      peer.socket.destroy();
    }
    const outside = [
      v1("203.0.113.5"),
      v2("203.0.113.6"),
      // ::ffff:203.0.113.7, as a dual-stack balancer names an IPv4 client.
      proxyV2({ source: "::ffff:cb00:7107", sourcePort: 40000, destination: "::1", destinationPort: 587 }),
      v2("2001:db8:2::8"),
    ];
    for (const header of outside) {
      const peer = await viaBalancer(header);
      assert.match(await peer.answer(), /^554 5\.7\.1 Your address is not allowed to use this relay\r\n$/);
      await eventuallyTrue("closed", () => peer.closed, 3_000);
    }
    const implicit = await viaBalancer(v2("203.0.113.9"), h.implicitPort);
    await eventuallyTrue("closed", () => implicit.closed, 3_000);
    assert.equal(implicit.text, "");
    assert.equal(await refusals(h, "ProxyClientNotAllowed"), 5);
    for (const claimed of ["203.0.113.5", "203.0.113.6", "203.0.113.7", "2001:db8:2::8", "203.0.113.9"])
      assert.equal(sessionFrom(h, claimed), false, claimed);
  });

  test("the balancer's own connection (LOCAL) is not a client and is served", async () => {
    const peer = await viaBalancer(proxyV2({ command: "LOCAL" }));
    assert.match(await peer.answer(), /^220 /);
    peer.socket.destroy();
  });

  test("a client the balancer cannot name (v1 UNKNOWN, v2 UNSPEC) cannot be checked against allowedClients: 554, fail closed", async () => {
    for (const header of [Buffer.from("PROXY UNKNOWN\r\n"), proxyV2({ family: 0x00 })]) {
      const peer = await viaBalancer(header);
      assert.match(await peer.answer(), /^554 5\.7\.1 Your address is not allowed to use this relay\r\n$/);
      await eventuallyTrue("closed", () => peer.closed, 3_000);
    }
  });

  test("a reload without allowedClients lets any named client in, for new connections", async () => {
    assert.equal(
      h.update((c) => (c.proxyProtocol = { trustedRanges: [balancer] })),
      true,
    );
    const peer = await viaBalancer(v2("203.0.113.10"));
    assert.match(await peer.answer(), /^220 /);
    peer.socket.destroy();
  });
});

describe("PROXY protocol on the forwarded listener: the named client against allowedClients (a Forwarded domain's allowedSourceRanges)", () => {
  let h: RelayHarness;
  let port: number;
  const viaBalancer = behindBalancer(async () => {
    port = await freePort();
    return (h = await startRelay({
      domains: [{ domain: "forwarded.example", addresses: ["support@forwarded.example"], credentials: [] }],
      limits,
      proxyProtocol: { trustedRanges: [balancer], allowedClients: ["198.51.100.0/24"] },
      configure: (config) => {
        config.listeners.forwarded = { port };
        config.domains[0]!.mode = "Forwarded";
      },
    }));
  });

  test("the mail service's egress range is served; any other named client gets 554, as the NetworkPolicy refuses it without a balancer", async () => {
    const via = (header: Buffer) => viaBalancer(header, port);
    assert.match(await (await via(v2("198.51.100.25"))).answer(), /^220 /);
    for (const header of [v1("203.0.113.25"), v2("203.0.113.26")]) {
      assert.match(await (await via(header)).answer(), /^554 5\.7\.1 Your address is not allowed to use this relay\r\n$/);
    }
    assert.equal(sessionFrom(h, "203.0.113.25") || sessionFrom(h, "203.0.113.26"), false);
  });
});

describe("PROXY protocol from an address not trusted to send it", () => {
  let h: RelayHarness;
  before(async () => {
    h = await startRelay({ domains: [exampleDomain(password)], limits, proxyProtocol: { trustedRanges: [balancer] } });
  });
  after(() => h?.stop());

  test("a header is refused: with 421 after the greeting, as an early talker before it; never a session of the address it claims", async () => {
    const after = await Peer.open(h.starttlsPort, "127.0.0.60");
    assert.match(await after.answer(), /^220 /);
    after.socket.write(v1("203.0.113.50"));
    assert.match(await after.answer(/421 /), /421 4\.7\.0 PROXY header from an address not trusted to send one/);
    await eventuallyTrue("closed", () => after.closed, 3_000);
    assert.equal(await refusals(h, "ProxyHeaderUntrusted"), 1);

    // As a balancer sends them: at once. Version 2's signature also reads as SMTP lines ending in QUIT (the spec chose it so).
    for (const [i, header] of [v1("203.0.113.51"), v2("203.0.113.52")].entries()) {
      const early = await Peer.open(h.starttlsPort, `127.0.0.6${i + 1}`);
      early.socket.write(header);
      await eventuallyTrue("closed", () => early.closed, 5_000);
      assert.match(early.text, /^(421|221) /m);
    }
    for (const claimed of ["203.0.113.50", "203.0.113.51", "203.0.113.52"]) assert.equal(sessionFrom(h, claimed), false, claimed);
  });

  test("a reload changes who is trusted, for new connections", async () => {
    assert.equal(
      h.update((c) => (c.proxyProtocol = { trustedRanges: ["127.0.0.60/31"] })),
      true,
    );
    const now = await Peer.open(h.starttlsPort, "127.0.0.61");
    now.socket.write(v2("203.0.113.53"));
    assert.match(await now.answer(), /^220 /);
    await eventuallyTrue("a session of 203.0.113.53", () => sessionFrom(h, "203.0.113.53"), 2_000);
    now.socket.destroy();
  });
});
