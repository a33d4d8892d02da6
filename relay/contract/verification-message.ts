// The verification email, built the same way whoever sends it: the relay for
// the outbound direction, the operator for the inbound one. The token travels
// in a header the inbound relay reads (and strips) and in the body.
import { randomBytes } from "node:crypto";

/** The header that carries the token; the inbound relay reads it (case-insensitively, as header names are) and strips it. */
export const verificationHeader = "X-SmtpConnector-Verification";

/** The verification email. Every value in it was validated above; the token appears in a header and the body. */
export function verificationMessage(
  hostname: string,
  request: { from: string; to: string; token: string; subject?: string },
  now = new Date(),
): Buffer {
  const lines = [
    `From: ${request.from}`,
    `To: ${request.to}`,
    `Subject: ${request.subject ?? "smtp-connector verification"}`,
    `Date: ${now.toUTCString().replace("GMT", "+0000")}`,
    `Message-ID: <${randomBytes(12).toString("hex")}.verification@${hostname}>`,
    "Auto-Submitted: auto-generated",
    "X-Auto-Response-Suppress: All",
    `${verificationHeader}: ${request.token}`,
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=us-ascii",
    "",
    "This message checks that mail for this support address flows through smtp-connector.",
    "It needs no action.",
    "",
    `Verification token: ${request.token}`,
    "",
  ];
  return Buffer.from(lines.join("\r\n"), "latin1");
}
