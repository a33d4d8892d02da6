// PROXY protocol version 2 headers as a load balancer writes them (HAProxy's
// proxy-protocol.txt, section 2.2), built byte by byte here so the tests do not
// trust the relay's own parser to say what a header is.
import { isIPv4 } from "node:net";

const signature = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

function ipBytes(address: string): Buffer {
  if (isIPv4(address)) return Buffer.from(address.split(".").map(Number));
  const [head = "", tail = ""] = address.split("::");
  const groups = (s: string) => (s ? s.split(":").map((g) => parseInt(g, 16)) : []);
  const h = groups(head);
  const t = address.includes("::") ? groups(tail) : [];
  const all = [...h, ...Array<number>(8 - h.length - t.length).fill(0), ...t];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

export function proxyV2(opts: {
  command?: "LOCAL" | "PROXY";
  /** The family/transport byte; default TCP over the source's family (0x11 or 0x21). */
  family?: number;
  source?: string;
  sourcePort?: number;
  destination?: string;
  destinationPort?: number;
  tlvs?: Buffer;
}): Buffer {
  const command = opts.command === "LOCAL" ? 0x20 : 0x21;
  const addresses =
    opts.source && opts.destination
      ? Buffer.concat([
          ipBytes(opts.source),
          ipBytes(opts.destination),
          Buffer.from([
            (opts.sourcePort ?? 0) >> 8,
            (opts.sourcePort ?? 0) & 0xff,
            (opts.destinationPort ?? 0) >> 8,
            (opts.destinationPort ?? 0) & 0xff,
          ]),
        ])
      : Buffer.alloc(0);
  const family = opts.family ?? (opts.source ? (isIPv4(opts.source) ? 0x11 : 0x21) : 0x00);
  const body = Buffer.concat([addresses, opts.tlvs ?? Buffer.alloc(0)]);
  const length = Buffer.alloc(2);
  length.writeUInt16BE(body.length);
  return Buffer.concat([signature, Buffer.from([command, family]), length, body]);
}
