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
  nameConstraints: "2.5.29.30",
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

/**
 * NameConstraints (RFC 5280 4.2.1.10): the dNSName subtrees a CA may vouch
 * for, and every IPv4 and IPv6 address excluded. Without an iPAddress entry a
 * name type is unconstrained, so "no IP addresses" must be said as an
 * exclusion of 0.0.0.0/0 and ::/0 (our relay certificates carry no IP SANs).
 */
function nameConstraints(constraints: NameConstraints): Buffer {
  const subtree = (general: Buffer) => sequence(general);
  const permitted = constraints.permittedDnsNames.map((n) => subtree(tlv(0x82, Buffer.from(n, "ascii"))));
  const excluded = constraints.excludeAllIpAddresses ? [subtree(tlv(0x87, Buffer.alloc(8))), subtree(tlv(0x87, Buffer.alloc(32)))] : [];
  // GeneralSubtrees are IMPLICIT [0] (permitted) and [1] (excluded): constructed context tags.
  return sequence(
    ...(permitted.length ? [tlv(0xa0, Buffer.concat(permitted))] : []),
    ...(excluded.length ? [tlv(0xa1, Buffer.concat(excluded))] : []),
  );
}

const publicOf = (key: KeyObject): KeyObject => (key.type === "private" ? createPublicKey(key) : key);

/** The key identifier of a public key: SHA-1 of its SubjectPublicKeyInfo (RFC 7093 allows any such method). */
export const keyIdentifier = (key: KeyObject): Buffer =>
  createHash("sha1")
    .update(publicOf(key).export({ format: "der", type: "spki" }))
    .digest();

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
  /** For a CA: the names it may vouch for (a critical NameConstraints extension). */
  nameConstraints?: NameConstraints;
}

export interface NameConstraints {
  /** dNSName subtrees: each name and every name under it. */
  permittedDnsNames: readonly string[];
  /** Exclude every IPv4 and IPv6 address. */
  excludeAllIpAddresses: boolean;
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
  // Critical, as RFC 5280 4.2.1.10 requires: a verifier that cannot honour the constraints must refuse the chain.
  if (request.ca && request.nameConstraints)
    extensions.push(extension(OID.nameConstraints, true, nameConstraints(request.nameConstraints)));
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

// --- Reading back ------------------------------------------------------------

interface Node {
  tag: number;
  content: Buffer;
}

/** The TLVs one after another in `der` (definite lengths only: DER). */
function children(der: Buffer): Node[] {
  const nodes: Node[] = [];
  let at = 0;
  while (at < der.length) {
    const tag = der[at]!;
    let len = der[at + 1]!;
    let start = at + 2;
    if (len & 0x80) {
      const count = len & 0x7f;
      if (count === 0 || count > 4) throw new Error("malformed DER length");
      len = 0;
      for (let i = 0; i < count; i++) len = len * 256 + der[start + i]!;
      start += count;
    }
    if (start + len > der.length) throw new Error("truncated DER");
    nodes.push({ tag, content: der.subarray(start, start + len) });
    at = start + len;
  }
  return nodes;
}

/** A CA certificate's NameConstraints as we write them, or undefined when it has none (e.g. a CA made before they existed). */
export function readNameConstraints(certDer: Buffer): NameConstraints | undefined {
  const [certificate] = children(certDer);
  const [tbs] = children(certificate?.content ?? Buffer.alloc(0));
  const wrapped = children(tbs?.content ?? Buffer.alloc(0)).find((n) => n.tag === 0xa3);
  if (!wrapped) return undefined;
  const wanted = oid(OID.nameConstraints);
  for (const ext of children(children(wrapped.content)[0]?.content ?? Buffer.alloc(0))) {
    const parts = children(ext.content);
    if (parts[0] === undefined || !tlv(parts[0].tag, parts[0].content).equals(wanted)) continue;
    const value = parts[parts.length - 1]!;
    const permitted: string[] = [];
    const excludedIps: Buffer[] = [];
    for (const trees of children(children(value.content)[0]?.content ?? Buffer.alloc(0))) {
      for (const tree of children(trees.content)) {
        const base = children(tree.content)[0];
        if (trees.tag === 0xa0 && base?.tag === 0x82) permitted.push(base.content.toString("ascii"));
        if (trees.tag === 0xa1 && base?.tag === 0x87) excludedIps.push(base.content);
      }
    }
    const everything = (length: number) => excludedIps.some((ip) => ip.length === length && ip.every((b) => b === 0));
    return { permittedDnsNames: permitted, excludeAllIpAddresses: everything(8) && everything(32) };
  }
  return undefined;
}
