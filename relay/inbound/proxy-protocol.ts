// The PROXY protocol (HAProxy's proxy-protocol.txt), versions 1 and 2: the
// header a load balancer sends before the client's first byte, naming the
// client it hides. smtp-server 3.21 reads version 1 only (a version 2 header is
// answered "* BAD Invalid PROXY header"); AWS NLB sends only version 2 and GCP's
// TCP proxy only version 1, so the relay reads both itself, here, from the raw
// socket, before smtp-server sees the connection (GreetingDelayServer).
//
// Who may send one is decided before any byte is read (ProxyTrust): only the
// listed load balancers, and from them a header is required. The header is not
// authenticated in any way: a trusted range is a promise that nothing else can
// connect from it.
import { BlockList, isIP, isIPv4 } from "node:net";
import type net from "node:net";

export interface ProxyHeader {
  version: 1 | 2;
  /** The client the balancer names; absent for LOCAL (v2) and for a client it cannot name (v1 UNKNOWN, v2 UNSPEC). */
  source?: { address: string; port: number };
  /** v2 LOCAL: the balancer's own connection (a health check), no client's. v1 has no such command. */
  local?: true;
}

export type ProxyParse =
  { kind: "incomplete" } | { kind: "invalid"; reason: string } | { kind: "header"; header: ProxyHeader; length: number };

const v2Signature = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const v1Prefix = Buffer.from("PROXY ", "latin1");
/** v1: "PROXY TCP6 " + two full IPv6 addresses + two ports + CRLF is at most 107 bytes (the spec's bound). */
const v1MaxBytes = 107;
/**
 * v2: 16 fixed bytes and the address block with its TLVs. An IPv6 block is 36 bytes; the TLVs balancers add (AWS's
 * VPC endpoint id, Azure's link id, a CRC, an ALPN) are tens of bytes. More than this is refused, not buffered.
 */
export const v2MaxBytes = 16 + 2048;

const isPrefixOf = (data: Buffer, of: Buffer) =>
  data.subarray(0, Math.min(data.length, of.length)).equals(of.subarray(0, Math.min(data.length, of.length)));

/** Reads one header from the start of `data`. Pure: the socket plumbing is readProxyHeader's. */
export function parseProxyHeader(data: Buffer): ProxyParse {
  if (isPrefixOf(data, v2Signature)) return data.length < 16 ? { kind: "incomplete" } : parseV2(data);
  if (isPrefixOf(data, v1Prefix)) return data.length < v1Prefix.length ? { kind: "incomplete" } : parseV1(data);
  return { kind: "invalid", reason: "the connection does not start with a PROXY header (version 1 or 2)" };
}

function parseV2(data: Buffer): ProxyParse {
  const versionCommand = data[12]!;
  const familyProtocol = data[13]!;
  const length = data.readUInt16BE(14);
  if (versionCommand >> 4 !== 2) return { kind: "invalid", reason: `version 2 signature with version ${versionCommand >> 4}` };
  const command = versionCommand & 0x0f;
  if (command > 1) return { kind: "invalid", reason: `unknown version 2 command ${command}` };
  if (16 + length > v2MaxBytes) return { kind: "invalid", reason: `version 2 header of ${16 + length} bytes, more than ${v2MaxBytes}` };
  if (data.length < 16 + length) return { kind: "incomplete" };
  const total = 16 + length;
  // LOCAL: the balancer's own connection (a health check); the addresses, if any, are to be ignored.
  if (command === 0) return { kind: "header", header: { version: 2, local: true }, length: total };
  const family = familyProtocol >> 4;
  const protocol = familyProtocol & 0x0f;
  // UNSPEC: the balancer does not know the client; the spec says to use the connection's own endpoints.
  if (family === 0) return { kind: "header", header: { version: 2 }, length: total };
  if (protocol !== 1)
    return {
      kind: "invalid",
      reason: protocol === 2 ? "version 2 header for a datagram (UDP) connection" : `unknown version 2 transport ${protocol}`,
    };
  const block = data.subarray(16, total);
  if (family === 1) {
    if (block.length < 12) return { kind: "invalid", reason: `version 2 IPv4 address block of ${block.length} bytes, fewer than 12` };
    return {
      kind: "header",
      header: { version: 2, source: { address: [...block.subarray(0, 4)].join("."), port: block.readUInt16BE(8) } },
      length: total,
    };
  }
  if (family === 2) {
    if (block.length < 36) return { kind: "invalid", reason: `version 2 IPv6 address block of ${block.length} bytes, fewer than 36` };
    const groups = Array.from({ length: 8 }, (_, i) => block.readUInt16BE(i * 2).toString(16));
    const address = canonicalIPv6(groups.join(":"));
    return { kind: "header", header: { version: 2, source: { address, port: block.readUInt16BE(32) } }, length: total };
  }
  // A UNIX socket (3) names no IP address the limits could count: refused rather than counted as the balancer.
  return {
    kind: "invalid",
    reason: family === 3 ? "version 2 header for a UNIX socket client" : `unknown version 2 address family ${family}`,
  };
}

const port = /^(0|[1-9][0-9]{0,4})$/;

function parseV1(data: Buffer): ProxyParse {
  const end = data.indexOf("\r\n", 0, "latin1");
  if (end < 0)
    return data.length >= v1MaxBytes
      ? { kind: "invalid", reason: `version 1 header without CRLF in ${v1MaxBytes} bytes` }
      : { kind: "incomplete" };
  if (end + 2 > v1MaxBytes) return { kind: "invalid", reason: `version 1 header longer than ${v1MaxBytes} bytes` };
  const line = data.subarray(0, end).toString("latin1");
  const fields = line.split(" ");
  if (fields[1] === "UNKNOWN") return { kind: "header", header: { version: 1 }, length: end + 2 };
  if (fields.length !== 6)
    return { kind: "invalid", reason: "version 1 header without exactly: PROXY TCP4|TCP6 source destination sport dport" };
  const [, family, source, destination, sourcePort, destinationPort] = fields as [string, string, string, string, string, string];
  const version = family === "TCP4" ? 4 : family === "TCP6" ? 6 : 0;
  if (version === 0) return { kind: "invalid", reason: "version 1 header with a protocol other than TCP4, TCP6 or UNKNOWN" };
  if (isIP(source) !== version || isIP(destination) !== version)
    return { kind: "invalid", reason: `version 1 header whose addresses are not ${family} addresses` };
  for (const p of [sourcePort, destinationPort]) {
    if (!port.test(p) || Number(p) > 65535) return { kind: "invalid", reason: "version 1 header with a port that is not 0 to 65535" };
  }
  return {
    kind: "header",
    header: { version: 1, source: { address: version === 6 ? canonicalIPv6(source) : source, port: Number(sourcePort) } },
    length: end + 2,
  };
}

/**
 * The compressed form a socket reports an IPv6 peer in, and an IPv4-mapped one (::ffff:a.b.c.d, which HAProxy on a
 * dual-stack `bind :::25 v4v6` names its IPv4 clients with) as the IPv4 address: URL canonicalisation alone writes
 * it ::ffff:c633:6407, which the per-source count (sourceOf) reads as the IPv6 /64 every such client shares, and
 * smtp-server's `::ffff:` stripping turns into "c633:6407" in Received:, the logs and the lockout keys.
 */
function canonicalIPv6(address: string): string {
  const canonical = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (!mapped) return canonical;
  const [high, low] = [parseInt(mapped[1]!, 16), parseInt(mapped[2]!, 16)];
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join(".");
}

/** IP addresses and CIDR ranges; an IPv4-mapped IPv6 address counts as its IPv4 one. */
export class AddressRanges {
  private readonly list = new BlockList();

  constructor(readonly ranges: readonly string[]) {
    for (const range of ranges) {
      const [address, prefix] = range.split("/") as [string, string | undefined];
      const type = isIPv4(address) ? "ipv4" : "ipv6";
      if (prefix === undefined) this.list.addAddress(address, type);
      else this.list.addSubnet(address, Number(prefix), type);
    }
  }

  includes(address: string | undefined): boolean {
    if (!address || this.ranges.length === 0) return false;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
    if (mapped) return this.list.check(mapped, "ipv4");
    return this.list.check(address, isIPv4(address) ? "ipv4" : "ipv6");
  }
}

/** The load balancers allowed (and required) to send a PROXY header. */
export class ProxyTrust extends AddressRanges {
  /** Whether a connection from `address` must start with a PROXY header. */
  trusts(address: string | undefined): boolean {
    return this.includes(address);
  }
}

/**
 * Reads the header from a freshly accepted socket, leaving every byte after it in the socket for smtp-server.
 * Calls back once: with the header, or with an error (the socket is then being closed).
 */
export function readProxyHeader(socket: net.Socket, callback: (error: Error | null, header?: ProxyHeader) => void): void {
  let buffered: Buffer = Buffer.alloc(0);
  let finished = false;
  const cleanup = () => {
    socket.removeListener("readable", onReadable);
    socket.removeListener("error", onError);
    socket.removeListener("close", onClose);
    socket.removeListener("end", onEnd);
  };
  const done = (error: Error | null, header?: ProxyHeader) => {
    if (finished) return;
    finished = true;
    cleanup();
    if (error) {
      // A late EPIPE while the refusal is flushed must not surface as an uncaught error.
      socket.on("error", () => undefined);
      if (!socket.destroyed) socket.end("421 4.7.0 Invalid PROXY header\r\n", () => socket.destroy());
    }
    callback(error, header);
  };
  const onError = (error: Error) => done(error);
  const onClose = () => done(new Error("closed before a PROXY header was received"));
  const onEnd = () => done(new Error("ended before a PROXY header was received"));
  const onReadable = () => {
    let chunk: Buffer | null;
    while ((chunk = socket.read() as Buffer | null) !== null) {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const parsed = parseProxyHeader(buffered);
      if (parsed.kind === "incomplete") continue;
      if (parsed.kind === "invalid") return done(new ProxyHeaderError(parsed.reason));
      const rest = buffered.subarray(parsed.length);
      if (rest.length > 0) socket.unshift(rest);
      return done(null, parsed.header);
    }
  };
  socket.on("readable", onReadable);
  socket.on("error", onError);
  socket.on("close", onClose);
  socket.on("end", onEnd);
}

/** A header that is there but malformed (as opposed to a connection that went away first). */
export class ProxyHeaderError extends Error {}
