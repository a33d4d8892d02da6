// The PROXY protocol parser (both versions) and the trust list, on header bytes
// built as the spec (HAProxy's proxy-protocol.txt) lays them out.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseProxyHeader, ProxyTrust, v2MaxBytes } from "../../relay/inbound/proxy-protocol.js";
import { proxyV2 } from "../support/proxy-protocol.js";

const parsed = (data: Buffer) => {
  const result = parseProxyHeader(data);
  assert.equal(result.kind, "header", JSON.stringify(result));
  return result;
};
const invalid = (data: Buffer, reason: RegExp) => {
  const result = parseProxyHeader(data);
  assert.equal(result.kind, "invalid", `accepted: ${data.toString("hex")}`);
  assert.match((result as { reason: string }).reason, reason);
};

describe("PROXY protocol version 1", () => {
  test("TCP4, TCP6 and UNKNOWN; the length covers the CRLF and nothing after it", () => {
    const v4 = parsed(Buffer.from("PROXY TCP4 203.0.113.7 10.0.0.1 40000 587\r\nEHLO x\r\n"));
    assert.deepEqual(v4.header, { version: 1, source: { address: "203.0.113.7", port: 40000 } });
    assert.equal(v4.length, "PROXY TCP4 203.0.113.7 10.0.0.1 40000 587\r\n".length);
    assert.deepEqual(parsed(Buffer.from("PROXY TCP6 2001:DB8::7 2001:db8::1 1 587\r\n")).header, {
      version: 1,
      source: { address: "2001:db8::7", port: 1 },
    });
    assert.deepEqual(parsed(Buffer.from("PROXY UNKNOWN\r\n")).header, { version: 1 });
  });
  test("TCP6 addresses are normalised: uncompressed to compressed, IPv4-mapped to the IPv4 address", () => {
    assert.deepEqual(parsed(Buffer.from("PROXY TCP6 2001:0db8:0:0:0:0:0:7 ::1 1 587\r\n")).header, {
      version: 1,
      source: { address: "2001:db8::7", port: 1 },
    });
    for (const mapped of ["0:0:0:0:0:ffff:c633:6407", "::FFFF:198.51.100.7", "::ffff:c633:6407"]) {
      assert.deepEqual(
        parsed(Buffer.from(`PROXY TCP6 ${mapped} ::1 1 587\r\n`)).header,
        { version: 1, source: { address: "198.51.100.7", port: 1 } },
        mapped,
      );
    }
  });
  test("incomplete until the CRLF, within 107 bytes", () => {
    for (const part of ["P", "PROXY", "PROXY TCP4 203.0.113.7 10.0.0.1 40000 587", "PROXY TCP4 203.0.113.7 10.0.0.1 40000 587\r"]) {
      assert.equal(parseProxyHeader(Buffer.from(part)).kind, "incomplete", part);
    }
    invalid(Buffer.from(`PROXY TCP4 ${"1".repeat(110)}`), /without CRLF in 107 bytes/);
  });
  test("malformed headers are refused", () => {
    invalid(Buffer.from("PROXY TCP4 203.0.113.7 10.0.0.1 40000\r\n"), /exactly/);
    invalid(Buffer.from("PROXY TCP4 2001:db8::7 10.0.0.1 40000 587\r\n"), /not TCP4 addresses/);
    invalid(Buffer.from("PROXY TCP4 203.0.113.7 10.0.0.1 70000 587\r\n"), /port/);
    invalid(Buffer.from("PROXY TCP4 203.0.113.7 10.0.0.1 040 587\r\n"), /port/);
    invalid(Buffer.from("PROXY UDP4 203.0.113.7 10.0.0.1 40000 587\r\n"), /TCP4, TCP6 or UNKNOWN/);
    invalid(Buffer.from("PROXY  TCP4 203.0.113.7 10.0.0.1 40000 587\r\n"), /exactly|protocol/);
    invalid(Buffer.from("EHLO client.test\r\n"), /does not start with a PROXY header/);
  });
});

describe("PROXY protocol version 2", () => {
  test("TCP over IPv4 and IPv6, with TLVs after the addresses (AWS NLB adds its VPC endpoint id)", () => {
    const v4 = proxyV2({
      source: "203.0.113.7",
      sourcePort: 40000,
      destination: "10.0.0.1",
      destinationPort: 587,
      tlvs: Buffer.from([0xea, 0x00, 0x04, 1, 2, 3, 4]),
    });
    const result = parsed(Buffer.concat([v4, Buffer.from("EHLO x\r\n")]));
    assert.deepEqual(result.header, { version: 2, source: { address: "203.0.113.7", port: 40000 } });
    assert.equal(result.length, v4.length);
    assert.deepEqual(parsed(proxyV2({ source: "2001:db8::7", sourcePort: 1, destination: "2001:db8::1", destinationPort: 587 })).header, {
      version: 2,
      source: { address: "2001:db8::7", port: 1 },
    });
  });
  test("an IPv4-mapped IPv6 source (HAProxy on a dual-stack bind) is its IPv4 address", () => {
    // ::ffff:198.51.100.7, as the 16 bytes of the address block.
    const header = proxyV2({ source: "::ffff:c633:6407", sourcePort: 1, destination: "2001:db8::1", destinationPort: 587 });
    assert.equal(header[13], 0x21);
    assert.deepEqual(parsed(header).header, { version: 2, source: { address: "198.51.100.7", port: 1 } });
    // Not mapped (the deprecated IPv4-compatible form, ffff elsewhere): left as IPv6.
    assert.deepEqual(parsed(proxyV2({ source: "::c633:6407", sourcePort: 1, destination: "::1", destinationPort: 587 })).header, {
      version: 2,
      source: { address: "::c633:6407", port: 1 },
    });
    assert.deepEqual(parsed(proxyV2({ source: "::ffff:0:c633:6407", sourcePort: 1, destination: "::1", destinationPort: 587 })).header, {
      version: 2,
      source: { address: "::ffff:0:c633:6407", port: 1 },
    });
  });
  test("LOCAL (the balancer's health check) and UNSPEC name no client; only LOCAL is the balancer's own", () => {
    assert.deepEqual(parsed(proxyV2({ command: "LOCAL" })).header, { version: 2, local: true });
    assert.deepEqual(parsed(proxyV2({ family: 0x00 })).header, { version: 2 });
  });
  test("incomplete until the whole declared length is there", () => {
    const header = proxyV2({ source: "203.0.113.7", sourcePort: 1, destination: "10.0.0.1", destinationPort: 2 });
    for (let n = 1; n < header.length; n++) assert.equal(parseProxyHeader(header.subarray(0, n)).kind, "incomplete", `${n} bytes`);
  });
  test("malformed headers are refused", () => {
    const good = proxyV2({ source: "203.0.113.7", sourcePort: 1, destination: "10.0.0.1", destinationPort: 2 });
    const patched = (offset: number, value: number) => Buffer.from(good.map((b, i) => (i === offset ? value : b)));
    invalid(patched(12, 0x11), /version 1/);
    invalid(patched(12, 0x23), /unknown version 2 command/);
    invalid(patched(13, 0x12), /datagram/);
    invalid(patched(13, 0x31), /UNIX socket/);
    invalid(patched(13, 0x51), /address family/);
    invalid(Buffer.concat([good.subarray(0, 14), Buffer.from([0, 4]), Buffer.alloc(4)]), /IPv4 address block of 4 bytes/);
    invalid(patched(13, 0x21), /IPv6 address block of 12 bytes/);
    invalid(Buffer.concat([good.subarray(0, 14), Buffer.from([0xff, 0xff])]), new RegExp(`more than ${v2MaxBytes}`));
  });
});

describe("ProxyTrust", () => {
  test("addresses and CIDR ranges, IPv4-mapped IPv6 as IPv4; nothing is trusted by default", () => {
    const trust = new ProxyTrust(["10.0.0.0/24", "192.0.2.9", "2001:db8:1::/48"]);
    assert.equal(trust.trusts("10.0.0.77"), true);
    assert.equal(trust.trusts("::ffff:10.0.0.77"), true);
    assert.equal(trust.trusts("10.0.1.1"), false);
    assert.equal(trust.trusts("192.0.2.9"), true);
    assert.equal(trust.trusts("192.0.2.10"), false);
    assert.equal(trust.trusts("2001:db8:1:ffff::1"), true);
    assert.equal(trust.trusts("2001:db8:2::1"), false);
    assert.equal(trust.trusts(undefined), false);
    assert.equal(new ProxyTrust([]).trusts("10.0.0.1"), false);
  });
});
