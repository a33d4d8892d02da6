// Writes made in one turn of the event loop leave as one: the socket is corked
// at the first write and uncorked in the next check phase (setImmediate). On
// loopback and in pods every socket write is a system call that also runs the
// peer's TCP receive path, and on TLS each write is its own record; batching
// the replies to pipelined commands (and a message's last chunk with its final
// dot) was the largest single CPU saving in the relay's profile (ADR 0008).
import type { Writable } from "node:stream";

const corked = new WeakSet<Writable>();

/** Holds this socket's writes until the next check phase of the event loop. */
export function batchWrites(socket: Writable): void {
  if (corked.has(socket)) return;
  corked.add(socket);
  socket.cork();
  setImmediate(() => {
    corked.delete(socket);
    socket.uncork();
  });
}

/** Batches every write to a socket whose writes other code makes (smtp-server's replies). */
export function batchAllWrites(socket: Writable): void {
  const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
  socket.write = ((...args: unknown[]) => {
    batchWrites(socket);
    return write(...args);
  }) as typeof socket.write;
}
