// The calibration point for `npm run bench:relay -- --prototype`: the
// throw-away cut-through prototype the targets were set against
// (smtp-server with STARTTLS and AUTH PLAIN, each message streamed into a
// pooled nodemailer transport to the next hop), with none of the product's
// work — no limits, no recipient rules, no header filtering, no metrics, no
// logs. Measured beside the relay in one run, it tells how much of the
// relay's cost per message is this machine and how much is the product.
// Never product code: started as a child process by bench/relay.ts only.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import nodemailer from "nodemailer";
import { SMTPServer } from "smtp-server";

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    "sink-port": { type: "string" },
    cert: { type: "string" },
    key: { type: "string" },
    user: { type: "string" },
    password: { type: "string" },
  },
});

const transport = nodemailer.createTransport({
  host: "127.0.0.1",
  port: Number(values["sink-port"]),
  pool: true,
  maxConnections: 20,
  maxMessages: Infinity,
  ignoreTLS: true,
});

const server = new SMTPServer({
  key: readFileSync(values.key!),
  cert: readFileSync(values.cert!),
  authMethods: ["PLAIN"],
  disableReverseLookup: true,
  logger: false,
  onAuth(auth, _session, callback) {
    if (auth.username === values.user && auth.password === values.password) callback(null, { user: auth.username });
    else callback(new Error("Invalid username or password"));
  },
  onData(stream, session, callback) {
    transport.sendMail(
      {
        envelope: {
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
          to: session.envelope.rcptTo.map((r) => r.address),
        },
        raw: stream,
      },
      (err) => callback(err ?? null),
    );
  },
});
server.listen(Number(values.port), "127.0.0.1");
process.on("SIGTERM", () => server.close(() => process.exit(0)));
