// The relay config: the contract between the operator (which renders it into
// the relay's config Secret) and the relay (which loads, validates and hot-
// reloads it). Defined once here; docs/relay-config.md describes it.
//
// It holds digests, never plaintext inbound passwords. Secrets the relay must
// present to others (next-hop passwords, webhook keys) are referenced by file
// path, so they live only in their own mounted Secrets.
import { Type, type Static, type TLiteral, type TUnion } from "@sinclair/typebox";
import { mailboxMaxLength } from "./mailbox.js";

export const configVersion = "smtpconnector.dev/relay-config/v1";

function Enum<const V extends readonly string[]>(values: V, description: string): TUnion<TLiteral<V[number]>[]> {
  return Type.Union(
    values.map((v) => Type.Literal(v)),
    { description },
  );
}

const Port = (description: string) => Type.Integer({ description, minimum: 1, maximum: 65535 });
const Seconds = (description: string, max = 86_400) => Type.Number({ description, exclusiveMinimum: 0, maximum: max });
const FilePath = (description: string) => Type.String({ description, minLength: 1, maxLength: 4096 });
const Timestamp = (description: string) => Type.String({ description, format: "date-time" });
const Hostname = (description: string) =>
  Type.String({
    description,
    minLength: 1,
    maxLength: 253,
    pattern: "^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$",
  });
// The length bounds only: the rest of a mailbox is checked, with a message, by config-parser.ts (mailbox.ts).
const Mailbox = Type.String({
  minLength: 3,
  maxLength: mailboxMaxLength,
  description: "A support address in lowercase, e.g. support@example.com.",
});

export const CredentialEntry = Type.Object({
  version: Type.Integer({ minimum: 1, description: "The credential version (SmtpDomain spec.inbound.credentials[].version)." }),
  username: Type.String({
    minLength: 1,
    maxLength: 256,
    pattern: "^[A-Za-z0-9._@+-]+$",
    description: "SASL username (it appears in trace headers, so a restricted alphabet).",
  }),
  passwordSha256: Type.String({
    pattern: "^[0-9a-f]{64}$",
    description: "Hex SHA-256 of the password. Passwords are 256-bit random, so a fast digest suffices.",
  }),
  state: Enum(["Active", "Revoked"] as const, "Revoked entries are refused (and reported as such) on the next AUTH."),
  expiresAt: Type.Optional(Timestamp("After this instant the version is refused as expired, without waiting for a new config.")),
});
export type CredentialEntry = Static<typeof CredentialEntry>;

export const SmtpDelivery = Type.Object({
  host: Hostname("Next-hop host."),
  port: Port("Next-hop port."),
  protocol: Enum(["SMTP", "LMTP"] as const, "Protocol towards the next hop."),
  tls: Enum(["None", "StartTLS", "Implicit"] as const, "TLS towards the next hop; StartTLS is required, never opportunistic."),
  caFile: Type.Optional(FilePath("PEM CA bundle to verify the next hop with, instead of the system roots.")),
  username: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: "AUTH username at the next hop." })),
  passwordFile: Type.Optional(FilePath("File holding the AUTH password at the next hop.")),
});
export type SmtpDelivery = Static<typeof SmtpDelivery>;

export const WebhookDelivery = Type.Object({
  url: Type.String({ pattern: "^https://", maxLength: 2048, description: "HTTPS endpoint receiving each message." }),
  hmacKeyFile: FilePath("File holding the HMAC-SHA256 key that signs each request."),
  caFile: Type.Optional(FilePath("PEM CA bundle to verify the endpoint with.")),
});
export type WebhookDelivery = Static<typeof WebhookDelivery>;

export const OutboundServer = Type.Object({
  host: Hostname("The customer's submission server."),
  port: Port("Its port (587 for StartTLS, 465 for Implicit)."),
  tls: Enum(["StartTLS", "Implicit"] as const, "TLS is always required: StartTLS is never opportunistic, plaintext is not an option."),
  caFile: Type.Optional(FilePath("PEM CA bundle to verify the server with, instead of the system roots.")),
  username: Type.String({ minLength: 1, maxLength: 256, description: "AUTH username at the customer's server." }),
  passwordFile: FilePath("File holding the AUTH password (a mounted Secret)."),
});
export type OutboundServer = Static<typeof OutboundServer>;

export const DkimKey = Type.Object({
  selector: Type.String({
    minLength: 1,
    maxLength: 63,
    pattern: "^[A-Za-z0-9]([-A-Za-z0-9_]{0,61}[A-Za-z0-9])?$",
    description: "The selector: its public key is published at <selector>._domainkey.<domain>.",
  }),
  algorithm: Enum(["rsa-sha256", "ed25519-sha256"] as const, "Signature algorithm; the key file must hold a key of that type."),
  keyFile: FilePath("PEM (PKCS#8 or PKCS#1) private key."),
});
export type DkimKey = Static<typeof DkimKey>;

export const SenderEntry = Type.Object({
  address: Mailbox,
  ready: Type.Boolean({
    description: "Whether the address is Ready. The helpdesk may send only as a Ready address; verification sends go out before it is.",
  }),
  server: OutboundServer,
});
export type SenderEntry = Static<typeof SenderEntry>;

export const DomainOutbound = Type.Object(
  {
    submission: Type.Array(CredentialEntry, {
      maxItems: 16,
      description: "The helpdesk's submission credential versions for this domain (digests only).",
    }),
    dkim: Type.Array(DkimKey, {
      maxItems: 4,
      description: "Keys that sign every message of this domain (one RSA and one Ed25519 sign side by side, RFC 8463). Empty: unsigned.",
    }),
    senders: Type.Array(SenderEntry, {
      maxItems: 1000,
      description: "Support addresses with their outbound server, and whether each is Ready.",
    }),
  },
  { description: "Outbound: the helpdesk's notifications, sent through the customer's own server." },
);
export type DomainOutbound = Static<typeof DomainOutbound>;

export const DomainEntry = Type.Object({
  domain: Hostname("The customer's mail domain, lowercase."),
  mode: Type.Optional(
    Enum(
      ["Authenticated", "Forwarded"] as const,
      "How the customer's mail comes in. Authenticated (the default): the customer's server logs in on starttls/implicitTls. Forwarded: the customer's mail service forwards to listeners.forwarded without AUTH (Microsoft 365, Google Workspace); no credentials.",
    ),
  ),
  authProtocol: Enum(["PLAIN", "LOGIN"] as const, "SASL mechanism offered for this domain."),
  credentials: Type.Array(CredentialEntry, {
    maxItems: 16,
    description: "Credential versions, active and revoked. Empty for a Forwarded domain.",
  }),
  addresses: Type.Array(Mailbox, { maxItems: 1000, description: "Support addresses that may receive inbound mail." }),
  delivery: Type.Object(
    {
      smtp: Type.Optional(Type.Object(SmtpDelivery.properties, { description: "Deliver over SMTP or LMTP." })),
      webhook: Type.Optional(Type.Object(WebhookDelivery.properties, { description: "Deliver to an HTTPS webhook." })),
    },
    { description: "Exactly one of smtp or webhook." },
  ),
  outbound: Type.Optional(DomainOutbound),
});
export type DomainEntry = Static<typeof DomainEntry>;

export const RelayConfig = Type.Object({
  version: Type.Literal(configVersion, { description: "The contract version." }),
  hostname: Hostname("Name in the SMTP greeting and the authserv-id of Authentication-Results."),
  listeners: Type.Object(
    {
      starttls: Type.Optional(
        Type.Object(
          { port: Port("Port of the STARTTLS listener (8587 in the operator's relay pods, behind the Service's 587: ADR 0012).") },
          { description: "The submission listener: STARTTLS required before AUTH." },
        ),
      ),
      implicitTls: Type.Optional(
        Type.Object(
          { port: Port("Port of the implicit-TLS listener (8465 in the operator's relay pods, behind the Service's 465).") },
          { description: "The implicit-TLS listener." },
        ),
      ),
      forwarded: Type.Optional(
        Type.Object(
          { port: Port("Port of the forwarded listener (8025 in the operator's relay pods, behind the Service's 25).") },
          {
            description:
              "The listener for forwarded mail: no AUTH (never offered), STARTTLS offered but not required, recipients only the support addresses of any served domain; never tagged auth=pass, checked with SPF, DKIM, DMARC and ARC instead (see forwarded).",
          },
        ),
      ),
      health: Type.Object({ port: Port("Port of /healthz, /readyz and /metrics.") }, { description: "The operations endpoint." }),
      submission: Type.Optional(
        Type.Object(
          {
            port: Port("Port of the helpdesk's submission listener (STARTTLS required before AUTH)."),
            bindAddress: Type.Optional(
              Type.String({ maxLength: 64, description: "Address it binds to; the listeners' bindAddress when omitted." }),
            ),
          },
          { description: "The cluster-internal submission listener for outbound mail. Never exposed on the customer-facing Service." },
        ),
      ),
      control: Type.Optional(
        Type.Object(
          {
            port: Port("Port of the control API (verification sends, last-use reports)."),
            tokenSha256: Type.String({ pattern: "^[0-9a-f]{64}$", description: "Hex SHA-256 of the bearer token the operator presents." }),
          },
          { description: "The internal control API the operator calls. Cluster-internal, authenticated." },
        ),
      ),
      bindAddress: Type.Optional(
        Type.String({ maxLength: 64, description: "Address the listeners bind to; all interfaces when omitted." }),
      ),
    },
    { description: "Where the relay listens. At least one of starttls, implicitTls and forwarded." },
  ),
  tls: Type.Object(
    {
      certFile: FilePath("PEM certificate chain of the relay."),
      keyFile: FilePath("PEM private key of the relay."),
      minVersion: Type.Optional(Enum(["TLSv1.2", "TLSv1.3"] as const, "Lowest TLS version accepted. Default TLSv1.2.")),
    },
    { description: "The relay's certificate (a mounted kubernetes.io/tls Secret)." },
  ),
  limits: Type.Object(
    {
      maxMessageBytes: Type.Integer({
        minimum: 1024,
        maximum: 1024 * 1024 * 1024,
        description: "Largest message accepted; enforced while DATA streams.",
      }),
      maxRecipients: Type.Integer({ minimum: 1, maximum: 1000, description: "Recipients per message." }),
      maxHeaderBytes: Type.Integer({ minimum: 1024, maximum: 1024 * 1024, description: "Size of the header section." }),
      maxLineBytes: Type.Integer({
        minimum: 1000,
        maximum: 1024 * 1024,
        description: "Longest line in DATA, terminator included (RFC 5322 allows 1000).",
      }),
      maxReceivedHops: Type.Integer({ minimum: 1, maximum: 1000, description: "Received: headers beyond which a message is a loop." }),
      greetingDelayMs: Type.Integer({
        minimum: 0,
        maximum: 30_000,
        description: "Wait before the greeting; a client that talks during it is refused (early talker).",
      }),
      idleTimeoutSeconds: Seconds("Close a session silent for this long."),
      sessionTimeoutSeconds: Seconds("Close a session open for this long in total."),
      nextHopTimeoutSeconds: Seconds("Give up on the next hop after this long and answer 451, before the sender's own timeout."),
      maxConnections: Type.Integer({ minimum: 1, maximum: 100_000, description: "Concurrent sessions per listener." }),
      maxConnectionsPerSource: Type.Optional(
        Type.Integer({
          minimum: 1,
          maximum: 100_000,
          description:
            "Concurrent connections from one source (an IPv4 address or an IPv6 /64) per listener, counted from the TCP accept; more get 421 (or, before an implicit-TLS handshake, are closed). Behind a load balancer that hides client addresses every client is one source: use proxyProtocol. Default 50.",
        }),
      ),
      tlsHandshakeTimeoutSeconds: Type.Optional(
        Seconds(
          "A TLS handshake (implicit TLS, or after STARTTLS) and any PROXY header must complete within this, or the connection is closed. Default 10.",
          300,
        ),
      ),
      maxUnauthenticatedCommands: Type.Optional(
        Type.Integer({
          minimum: 3,
          maximum: 1000,
          description:
            "Commands a session may send before it authenticates, before TLS included (AUTH and QUIT not counted); the next one gets 421. Default 10.",
        }),
      ),
      spoolBytes: Type.Optional(
        Type.Integer({
          minimum: 1024,
          maximum: 64 * 1024 * 1024 * 1024,
          description:
            "Disk the DKIM signing spools of large outbound messages may use at once; a message that would take more gets 452 4.3.1 and is retried by the sender. At least maxMessageBytes. Default: twice maxMessageBytes, at least 64 MiB (the operator's relay pods size their /tmp for the default).",
        }),
      ),
      forwardedMemoryBytes: Type.Optional(
        Type.Integer({
          minimum: 1024,
          maximum: 64 * 1024 * 1024 * 1024,
          description:
            "Memory the forwarded listener's messages may hold at once (each is held until its checks are done); a message that would take more gets 452 4.3.1 and is retried by the sender. At least maxMessageBytes. Default: twice maxMessageBytes, at least 64 MiB.",
        }),
      ),
    },
    { description: "Limits on sessions and messages." },
  ),
  authFailures: Type.Object(
    {
      perConnection: Type.Integer({ minimum: 1, maximum: 100, description: "Failed AUTH attempts after which the session is closed." }),
      delayMs: Type.Integer({
        minimum: 0,
        maximum: 30_000,
        description: "Delay before answering the first failure; it doubles with each further failure in the session.",
      }),
      lockoutThreshold: Type.Integer({
        minimum: 1,
        maximum: 100_000,
        description:
          "Failures from one source (an IPv4 address or an IPv6 /64), whatever the username, within the window that lock the source out. Counted per listener kind: inbound and submission apart.",
      }),
      usernameLockoutThreshold: Type.Optional(
        Type.Integer({
          minimum: 1,
          maximum: 100_000,
          description:
            "Failures of one username from one address within the window that lock that username out from that address only (never from elsewhere; a success there forgives them). At most lockoutThreshold; lockoutThreshold when omitted.",
        }),
      ),
      lockoutWindowSeconds: Seconds("Window in which failures are counted."),
      lockoutSeconds: Seconds(
        "How long the failed AUTHs of a locked-out source, or of a username from an address, are answered 454 4.7.0 (a correct password is still accepted).",
      ),
    },
    { description: "Brute-force limits on AUTH, per session and across sessions." },
  ),
  proxyProtocol: Type.Optional(
    Type.Object(
      {
        trustedRanges: Type.Array(Type.String({ maxLength: 49 }), {
          minItems: 1,
          maxItems: 64,
          description:
            "IP addresses or CIDR ranges of the load balancers whose connections must start with a PROXY header (version 1 or 2); from any other address a PROXY header is refused (421). A /0 is refused: it would let any client name its own address.",
        }),
        allowedClients: Type.Optional(
          Type.Array(Type.String({ maxLength: 49 }), {
            minItems: 1,
            maxItems: 64,
            description:
              "IP addresses or CIDR ranges of the clients a trusted balancer's header may name, on the customer-facing listeners (starttls, implicitTls, forwarded); any other named client is refused (554 5.7.1, or closed before an implicit-TLS handshake) and counted as ProxyClientNotAllowed. The NetworkPolicy sees only the balancer, so this is what enforces the domain's allowedSourceRanges behind one. Absent: any client. The balancer's own connections (v2 LOCAL) are not checked; a header that names no client (v1 UNKNOWN, v2 UNSPEC) is refused while this is set.",
          }),
        ),
      },
      {
        description:
          "PROXY protocol, versions 1 and 2, from trusted load balancers, so logs, lockouts and per-source limits see the real client address.",
      },
    ),
  ),
  outbound: Type.Optional(
    Type.Object(
      {
        systemDomains: Type.Array(Hostname("A domain of the helpdesk itself."), {
          maxItems: 64,
          description: "The helpdesk's own domains: a sender in one of them is never sent through a customer's server.",
        }),
        unconnectedSenders: Enum(
          ["Refuse", "DefaultTransport"] as const,
          "What happens to a sender of an authenticated domain that is not a Ready support address.",
        ),
        defaultTransport: Type.Optional(
          Type.Object(OutboundServer.properties, {
            description: "Where unconnected senders go when unconnectedSenders is DefaultTransport.",
          }),
        ),
      },
      { description: "Rules for the submission listener." },
    ),
  ),
  forwarded: Type.Optional(
    Type.Object(
      {
        trustedArcSealers: Type.Array(Hostname("A sealer's d= in lowercase, e.g. microsoft.com, google.com."), {
          maxItems: 32,
          description:
            "ARC sealers whose chains count: arc=pass only when the chain verifies and its latest ARC-Seal's d= is one of these or a subdomain of one. Any other chain is written arc=none with the sealer in a comment.",
        }),
        dnsServers: Type.Optional(
          Type.Array(Type.String({ minLength: 2, maxLength: 64 }), {
            minItems: 1,
            maxItems: 4,
            description:
              "DNS servers for the SPF, DKIM, DMARC and ARC lookups: IP addresses, each optionally with a port (192.0.2.53:5353, [2001:db8::53]:53). The system resolver when omitted.",
          }),
        ),
      },
      { description: "How the forwarded listener checks what it receives. Installation-wide." },
    ),
  ),
  domains: Type.Array(DomainEntry, { maxItems: 100, description: "The connected domains this relay serves." }),
});
export type RelayConfig = Static<typeof RelayConfig>;

/** Production defaults the operator renders (and the reference documents). */
export const recommendedLimits: RelayConfig["limits"] = {
  maxMessageBytes: 26_214_400,
  maxRecipients: 50,
  maxHeaderBytes: 262_144,
  maxLineBytes: 1000,
  maxReceivedHops: 30,
  greetingDelayMs: 0,
  idleTimeoutSeconds: 300,
  sessionTimeoutSeconds: 1800,
  nextHopTimeoutSeconds: 120,
  maxConnections: 1000,
  maxConnectionsPerSource: 50,
  tlsHandshakeTimeoutSeconds: 10,
  maxUnauthenticatedCommands: 10,
};

/** What the relay uses when the optional connection limits are not in its config. */
export const connectionLimitDefaults = {
  maxConnectionsPerSource: 50,
  tlsHandshakeTimeoutSeconds: 10,
  maxUnauthenticatedCommands: 10,
} as const;

export const recommendedAuthFailures: RelayConfig["authFailures"] = {
  perConnection: 3,
  delayMs: 1000,
  lockoutThreshold: 20,
  usernameLockoutThreshold: 5,
  lockoutWindowSeconds: 600,
  lockoutSeconds: 900,
};
