// A tiny authoritative DNS server on 127.0.0.1 for tests: it answers TXT
// queries from a map the test changes at will, NXDOMAIN for anything else.
// Enough of RFC 1035 for the operator's DKIM check (node:dns as the client).
import { createSocket } from "node:dgram";

export interface TestDns {
  address: string;
  txt: Map<string, string>;
  /** Names (and the names below them) this server never answers, as an attacker's slow nameserver would not. */
  silent: Set<string>;
  /** Queries received for silent names. */
  unanswered: number;
  stop(): Promise<void>;
}

export async function startDns(): Promise<TestDns> {
  const txt = new Map<string, string>();
  const silent = new Set<string>();
  const state = { unanswered: 0 };
  const socket = createSocket("udp4");
  socket.on("message", (query, peer) => {
    if (query.length < 12) return;
    // The question: labels up to a zero byte, then type and class.
    let at = 12;
    const labels: string[] = [];
    while (at < query.length && query[at] !== 0) {
      labels.push(query.subarray(at + 1, at + 1 + query[at]!).toString("latin1"));
      at += 1 + query[at]!;
    }
    const questionEnd = at + 5;
    const name = labels.join(".").toLowerCase();
    if ([...silent].some((s) => name === s || name.endsWith(`.${s}`))) {
      state.unanswered++;
      return;
    }
    const type = query.readUInt16BE(at + 1);
    const value = type === 16 ? txt.get(name) : undefined;
    const header = Buffer.alloc(12);
    query.copy(header, 0, 0, 2); // the id
    header.writeUInt16BE(value !== undefined ? 0x8400 : 0x8403, 2); // response, authoritative; NXDOMAIN without an answer
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(value !== undefined ? 1 : 0, 6);
    const parts = [header, query.subarray(12, questionEnd)];
    if (value !== undefined) {
      // TXT rdata: character-strings of at most 255 bytes each.
      const chunks: Buffer[] = [];
      for (let i = 0; i < value.length; i += 255) {
        const chunk = Buffer.from(value.slice(i, i + 255), "latin1");
        chunks.push(Buffer.from([chunk.length]), chunk);
      }
      const rdata = Buffer.concat(chunks);
      const answer = Buffer.alloc(12);
      answer.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question
      answer.writeUInt16BE(16, 2);
      answer.writeUInt16BE(1, 4);
      answer.writeUInt32BE(60, 6);
      answer.writeUInt16BE(rdata.length, 10);
      parts.push(answer, rdata);
    }
    socket.send(Buffer.concat(parts), peer.port, peer.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", () => resolve()));
  return {
    address: `127.0.0.1:${socket.address().port}`,
    txt,
    silent,
    get unanswered() {
      return state.unanswered;
    },
    stop: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}
