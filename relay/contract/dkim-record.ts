// The DNS TXT record that publishes a DKIM key's public half (RFC 6376 §3.6.1,
// RFC 8463 for Ed25519): the relay signs with the private key, the operator
// publishes this record in the SmtpDomain's status.
import { createPublicKey, type KeyObject } from "node:crypto";

/** The DNS TXT record value that publishes a key's public half. */
export function dnsRecord(key: KeyObject): string {
  const publicKey = key.type === "private" ? createPublicKey(key) : key;
  if (publicKey.asymmetricKeyType === "ed25519") {
    const jwk = publicKey.export({ format: "jwk" });
    return `v=DKIM1; k=ed25519; p=${Buffer.from(jwk.x ?? "", "base64url").toString("base64")}`;
  }
  const der = publicKey.export({ format: "der", type: "spki" });
  return `v=DKIM1; k=rsa; p=${der.toString("base64")}`;
}
