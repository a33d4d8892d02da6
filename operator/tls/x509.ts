// A small X.509 v3 certificate builder (RFC 5280) over node:crypto, which
// parses and verifies certificates but cannot make them. Only what the
// operator issues: ECDSA P-256 keys signed with SHA-256, a CA and its
// server certificates. Everything is DER; the result is checked by parsing it
// back with X509Certificate before anyone sees it.
import { createHash, createPublicKey, randomBytes, sign, X509Certificate, type KeyObject } from "node:crypto";
import { isIP } from "node:net";

// --- DER -------------------------------------------------------------------

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

const tlv = (tag: number, content: Buffer): Buffer => Buffer.concat([Buffer.from([tag]), length(content.length), content]);
const sequence = (...items: Buffer[]) => tlv(0x30, Buffer.concat(items));
const set = (...items: Buffer[]) => tlv(0x31, Buffer.concat(items));
const explicit = (n: number, content: Buffer) => tlv(0xa0 | n, content);
const octets = (content: Buffer) => tlv(0x04, content);
const utf8 = (text: string) => tlv(0x0c, Buffer.from(text, "utf8"));
const boolean = (value: boolean) => tlv(0x01, Buffer.from([value ? 0xff : 0x00]));

/** A non-negative INTEGER from big-endian bytes: minimal, with a 0x00 before a set top bit. */
function integer(bytes: Buffer): Buffer {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const body = bytes.subarray(start);
  return tlv(0x02, body[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), body]) : body);
}

function oid(dotted: string): Buffer {
  const arcs = dotted.split(".").map(Number);
  const out = [40 * arcs[0]! + arcs[1]!];
  for (const arc of arcs.slice(2)) {
    const base128 = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) base128.unshift(0x80 | (v & 0x7f));
    out.push(...base128);
  }
  return tlv(0x06, Buffer.from(out));
}

/** BIT STRING of whole bytes (signatures, key usage with its unused trailing bits counted). */
function bitString(bytes: Buffer, unusedBits = 0): Buffer {
  return tlv(0x03, Buffer.concat([Buffer.from([unusedBits]), bytes]));
}

/** UTCTime until 2049, GeneralizedTime after (RFC 5280 4.1.2.5), whole seconds. */
function time(at: Date): Buffer {
  const iso = at.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-:T]/g, "");
  const year = at.getUTCFullYear();
  return year < 2050 ? tlv(0x17, Buffer.from(`${digits.slice(2)}Z`, "ascii")) : tlv(0x18, Buffer.from(`${digits}Z`, "ascii"));
}

// --- Certificates --------------------------------------------------------------

const OID = {
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  commonName: "2.5.4.3",
  organization: "2.5.4.10",
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  authorityKeyIdentifier: "2.5.29.35",
  extKeyUsage: "2.5.29.37",
  serverAuth: "1.3.6.1.5.5.7.3.1",
} as const;

export interface DistinguishedName {
  commonName: string;
  organization?: string;
}

function name(dn: DistinguishedName): Buffer {
  const rdns = [];
  if (dn.organization) rdns.push(set(sequence(oid(OID.organization), utf8(dn.organization))));
  rdns.push(set(sequence(oid(OID.commonName), utf8(dn.commonName))));
  return sequence(...rdns);
}

const extension = (id: string, critical: boolean, value: Buffer) => sequence(oid(id), ...(critical ? [boolean(true)] : []), octets(value));

/** Key usage bits, numbered as in RFC 5280 (0 = digitalSignature, 5 = keyCertSign, 6 = cRLSign). */
function keyUsage(bits: number[]): Buffer {
  let value = 0;
  for (const bit of bits) value |= 0x80 >> bit;
  let unused = 0;
  while (unused < 7 && !(value & (1 << unused))) unused++;
  return bitString(Buffer.from([value]), unused);
}

function subjectAltName(names: readonly string[]): Buffer {
  return sequence(
    ...names.map((n) => {
      if (isIP(n) === 4) return tlv(0x87, Buffer.from(n.split(".").map(Number)));
      if (isIP(n) === 6) throw new Error(`IPv6 subject alternative names are not supported: ${n}`);
      return tlv(0x82, Buffer.from(n, "ascii")); // dNSName, IA5String
    }),
  );
}

const publicOf = (key: KeyObject): KeyObject => (key.type === "private" ? createPublicKey(key) : key);

/** The key identifier of a public key: SHA-1 of its SubjectPublicKeyInfo (RFC 7093 allows any such method). */
export const keyIdentifier = (key: KeyObject): Buffer => createHash("sha1").update(publicOf(key).export({ format: "der", type: "spki" })).digest();

export interface CertificateRequest {
  subject: DistinguishedName;
  /** The subject's key (a private key stands for its public half). */
  publicKey: KeyObject;
  notBefore: Date;
  notAfter: Date;
  /** A CA certificate (keyCertSign, cRLSign) rather than a TLS server's. */
  ca?: boolean;
  /** DNS names and IPv4 addresses, for a server certificate. */
  subjectAltNames?: readonly string[];
}

export interface Issuer {
  subject: DistinguishedName;
  /** The issuer's private key (ECDSA P-256). */
  privateKey: KeyObject;
}

/** Builds, signs and checks a certificate (self-signed when the issuer's key is the subject's). Returns PEM. */
export function issueCertificate(request: CertificateRequest, signer: Issuer): string {
  if (signer.privateKey.type !== "private" || signer.privateKey.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    throw new Error("the issuer's key must be an ECDSA P-256 private key");
  }
  const publicKey = publicOf(request.publicKey);
  const serial = randomBytes(16);
  serial[0] = serial[0]! & 0x7f; // positive, at most 20 octets
  const extensions = [
    extension(OID.basicConstraints, true, request.ca ? sequence(boolean(true), integer(Buffer.from([0]))) : sequence()),
    extension(OID.keyUsage, true, keyUsage(request.ca ? [0, 5, 6] : [0])),
    extension(OID.subjectKeyIdentifier, false, octets(keyIdentifier(publicKey))),
    extension(OID.authorityKeyIdentifier, false, sequence(tlv(0x80, keyIdentifier(signer.privateKey)))),
  ];
  if (!request.ca) extensions.push(extension(OID.extKeyUsage, false, sequence(oid(OID.serverAuth))));
  if (request.subjectAltNames?.length) extensions.push(extension(OID.subjectAltName, false, subjectAltName(request.subjectAltNames)));
  const algorithm = sequence(oid(OID.ecdsaWithSha256));
  const tbs = sequence(
    explicit(0, integer(Buffer.from([2]))), // v3
    integer(serial),
    algorithm,
    name(signer.subject),
    sequence(time(request.notBefore), time(request.notAfter)),
    name(request.subject),
    publicKey.export({ format: "der", type: "spki" }),
    explicit(3, sequence(...extensions)),
  );
  const signature = sign("sha256", tbs, { key: signer.privateKey, dsaEncoding: "der" });
  const der = sequence(tbs, algorithm, bitString(signature));
  const pem = `-----BEGIN CERTIFICATE-----\n${der.toString("base64").replace(/.{1,64}/g, "$&\n")}-----END CERTIFICATE-----\n`;
  // Parse it back and check the signature: a malformed certificate never leaves here.
  const parsed = new X509Certificate(pem);
  if (!parsed.verify(publicOf(signer.privateKey))) throw new Error("issued certificate does not verify with its issuer's key");
  return pem;
}
