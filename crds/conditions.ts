// The condition types and reasons of the API: the one list the operator sets
// them from and docs/api.md is generated from. Reasons are stable CamelCase
// words; GitOps tools and alerting match on them, so they are never renamed.

export interface ConditionType {
  /** When the condition is True, False or Unknown, in one paragraph. */
  lifecycle: string;
}

export const smtpDomainConditions = {
  CredentialsIssued: {
    lifecycle:
      "True once every credential version in spec has a Secret the relay can use (issued by the operator, or your own via secretRef) and at least one of them is Active; in Forwarded mode True with NotRequired (no inbound credentials are issued). False while a version's Secret cannot be issued or read, when no version is Active (NoActiveCredential), when spec lists a revoked version as Active (VersionRevoked), or when an operator-issued Secret was edited by hand (SecretModified); the reason says which.",
  },
  CertificateReady: {
    lifecycle:
      "True when the relay's TLS certificate is usable: issued by the operator's CA (and renewed well before expiry), or read from the Secret in spec.relay.tls.secretName and covering the host names the customer's server connects to. Still True, with ExpiringSoon, in the last third of its life (at most 14 days) so you are warned in time. False when it is missing, malformed, expired, not yet valid, or does not cover spec.relay.hostnames.",
  },
  RelayAvailable: {
    lifecycle:
      "True when the relay Deployment has its desired replicas available behind the Service. False while it rolls out for the first time, when no replica is available, or when a Secret it needs is missing or invalid.",
  },
  AddressesConfigured: {
    lifecycle: "True when at least one SupportAddress of the domain is served. False with NoAddresses until you add one.",
  },
  DKIMRecordPublished: {
    lifecycle:
      "Present only when spec.dkim lists keys. True when every key's TXT record is published: declared with recordPublished, or found by the operator's DNS check (--dns-resolver). False with the reason of the first key that is not; the message names the selector and the record to publish. It does not hold back Ready: a key whose record is not published is simply not used for signing.",
  },
  LimitsApplied: {
    lifecycle:
      "Present only when spec.relay.limits sets a limit. True with AsRequested when the relay applies what was asked; still True, with LimitCapped, when a limit asked for is above the installation's maximum (the operator's --relay-max-message-size or --relay-max-recipients) and the relay applies the maximum instead: the message names what was requested and what applies, and a LimitCapped Warning Event says so once per change. It does not hold back Ready. status.relay.limits shows what applies.",
  },
  Ready: {
    lifecycle:
      "True when CredentialsIssued, CertificateReady, RelayAvailable and AddressesConfigured are all True and the domain is not blocked by a limit, a conflict or a system domain. CredentialsIssued False with VersionRevoked or SecretModified does not hold it back while another version is Active: the relay goes on accepting exactly what was issued, and Stalled says what needs a change. Otherwise False with the reason of the first condition that holds it back.",
  },
  Reconciling: {
    lifecycle:
      "Present, and True, only while the operator is still making changes (kstatus), e.g. ModeChanging while the relay rolls out a change of spec.inbound.mode. Absent otherwise.",
  },
  Stalled: {
    lifecycle: "Present, and True, only while the operator cannot make progress without a change from you (kstatus). Absent otherwise.",
  },
} as const satisfies Record<string, ConditionType>;

export const supportAddressConditions = {
  DomainReady: {
    lifecycle:
      "True when the referenced SmtpDomain exists, is Ready, and this address may be served under it (same domain, not a system address, within limits, no conflict, outbound credentials Secret present and well formed). False otherwise, with the reason.",
  },
  InboundVerified: {
    lifecycle:
      "Unknown until the first inbound verification ends. True when the inbound verification email (sent from the helpdesk's system sender to the address, as anyone's mail would be) came back through this domain's relay with its one-time token: authenticated with an Active credential version, or in Forwarded mode on the forwarded listener. False when the last attempt failed; the reason says how.",
  },
  OutboundVerified: {
    lifecycle:
      "Unknown until the first outbound verification ends. True when an email sent through the outbound path and the customer's server, with this address's credentials, came back through the authenticated relay, or in Forwarded mode came back forwarded with the relay's DKIM signature intact (d=<domain>) or under an ARC seal of a trusted sealer. False when the last attempt failed; the reason says how.",
  },
  Ready: {
    lifecycle:
      "True when DomainReady, InboundVerified and OutboundVerified are all True. Otherwise False with the reason of the first one that is not.",
  },
  Reconciling: {
    lifecycle:
      "Present, and True, only while the operator is still working on the address, e.g. a verification is in flight (kstatus). Absent otherwise.",
  },
  Stalled: {
    lifecycle: "Present, and True, only while the address cannot progress without a change from you (kstatus). Absent otherwise.",
  },
} as const satisfies Record<string, ConditionType>;

export type SmtpDomainConditionType = keyof typeof smtpDomainConditions;
export type SupportAddressConditionType = keyof typeof supportAddressConditions;

export interface Reason {
  /** What it means and what to do about it. */
  meaning: string;
  /** The condition types that use it. */
  conditions: readonly string[];
}

export const reasons = {
  // Progress and success
  Issued: {
    conditions: ["CredentialsIssued", "CertificateReady"],
    meaning: "Every credential version has a usable Secret; the relay's certificate is issued by the operator's CA and current.",
  },
  Valid: {
    conditions: ["CertificateReady"],
    meaning: "The relay's certificate from spec.relay.tls.secretName is current and covers the relay's host names.",
  },
  ExpiringSoon: {
    conditions: ["CertificateReady"],
    meaning:
      "The relay's certificate is in the last third of its life (at most 14 days left). Renew it (cert-manager does so on its own); an operator-issued one shows this only if its renewal failed.",
  },
  AsRequested: { conditions: ["LimitsApplied"], meaning: "The relay applies the message limits spec.relay.limits asks for." },
  LimitCapped: {
    conditions: ["LimitsApplied"],
    meaning:
      "spec.relay.limits asks for a larger message size or more recipients than the installation allows (the operator's --relay-max-message-size, --relay-max-recipients; the chart's operator.relayMessageLimits). The relay applies the maximum; the message names what was requested and what applies. Lower the request, or ask the platform team to raise the maximum. Also a Warning Event, once per change.",
  },
  RecordPublished: {
    conditions: ["DKIMRecordPublished"],
    meaning: "Every DKIM key's TXT record is published (declared, or found in DNS).",
  },
  RecordNotConfirmed: {
    conditions: ["DKIMRecordPublished"],
    meaning:
      "A key's record is neither declared published (recordPublished) nor checked in DNS (no --dns-resolver): publish it, then set recordPublished.",
  },
  RecordMissing: {
    conditions: ["DKIMRecordPublished"],
    meaning: "The DNS check found no TXT record at <selector>._domainkey.<domain>: publish the value from status.dkim.records.",
  },
  RecordMismatch: {
    conditions: ["DKIMRecordPublished"],
    meaning:
      "The DNS check found a TXT record for the selector with another public key: replace it with the value from status.dkim.records.",
  },
  DNSCheckFailed: {
    conditions: ["DKIMRecordPublished"],
    meaning: "The DNS check could not get an answer (resolver unreachable, SERVFAIL); it is retried.",
  },
  Available: { conditions: ["RelayAvailable"], meaning: "The relay has its replicas available." },
  AddressesServed: { conditions: ["AddressesConfigured"], meaning: "At least one support address is served for the domain." },
  Ready: { conditions: ["Ready", "DomainReady"], meaning: "Everything this condition depends on is True." },
  Verified: {
    conditions: ["InboundVerified", "OutboundVerified"],
    meaning:
      "The token came back through the inbound relay of this domain: authenticated with an Active credential version, or (Forwarded mode) forwarded; for the outbound email forwarded with the relay's DKIM signature intact or under a trusted ARC seal.",
  },
  NotRequired: {
    conditions: ["CredentialsIssued"],
    meaning:
      "spec.inbound.mode is Forwarded: the customer's mail service forwards without AUTH, so no inbound credentials are issued. Versions issued before the switch are revoked for good (status.revokedVersions).",
  },
  ModeChanging: {
    conditions: ["Reconciling"],
    meaning:
      "spec.inbound.mode changed. Already applied in one step: the credentials (revoked for good on a switch to Forwarded, issued on a switch to Authenticated), the relay config, the Service's ports and the NetworkPolicy. Waiting for the relay Deployment to roll out with the new listeners; status.inboundMode then shows the new mode. The addresses verify again in the new mode.",
  },
  Progressing: {
    conditions: ["Reconciling", "RelayAvailable", "Ready"],
    meaning: "The operator is applying changes; nothing is needed from you.",
  },
  VerificationPending: {
    conditions: ["InboundVerified", "OutboundVerified", "Reconciling", "Ready"],
    meaning: "A verification email is on its way; the result follows within the verification timeout.",
  },
  Disconnecting: {
    conditions: ["Ready", "Reconciling"],
    meaning:
      "The SmtpDomain is being deleted: its finalizer revokes every credential version in the relay and scales it to zero, then everything the domain owns is removed. A Disconnecting Event says when it started.",
  },

  ReconcileFailed: {
    conditions: ["Ready", "Stalled", "Reconciling"],
    meaning:
      "The operator could not finish reconciling the resource; the message says what failed and what to do (e.g. the namespace of its CA Secret is missing, or its ServiceAccount lacks a permission). On Stalled when only such a change fixes it, otherwise on Reconciling while it is retried with backoff; on Ready too unless the resource is Ready already (a Ready relay serves on). The same text is in a Warning Event. The next successful reconcile replaces it.",
  },
  InvalidObject: {
    conditions: ["Ready", "Stalled"],
    meaning:
      "The object does not match the schema of the API version this operator reads (crds/schema.ts): its CRD was applied by hand from another version, or a conversion left a field out. The message names the fields. Until the object or the CRD is fixed the operator does not act on it: an address is not served, a domain's relay keeps what it was last given, and neither counts for the rules. The same text is in a Warning Event; the next valid version replaces it.",
  },

  // SmtpDomain problems
  NoActiveCredential: {
    conditions: ["CredentialsIssued", "Stalled", "Ready"],
    meaning:
      "Every credential version of the domain is revoked or expired, so nothing can arrive authenticated; its addresses report DomainReady=False (DomainNotReady) and are not Ready. Add a version with the next unused number to spec.inbound.credentials.",
  },
  VersionRevoked: {
    conditions: ["CredentialsIssued", "Stalled"],
    meaning:
      "spec.inbound.credentials lists as Active a version that was revoked or expired before (e.g. a GitOps sync re-adding an entry that had been removed). Revocation is for good: the relay keeps refusing it and no password is issued for it again. Mark it Revoked or remove it, and add a version with the next unused number. Ready stays True while another version is Active.",
  },
  SecretModified: {
    conditions: ["CredentialsIssued", "Stalled"],
    meaning:
      "An operator-issued credential Secret was edited or deleted by hand. The Secret is the operator's: the relay keeps accepting only the password issued for that version (its digest is in status.credentials), nothing is adopted and no other password is issued for it. Put the issued username and password back, or rotate: add the next version, move the customer's server to it, revoke this one. Ready stays True while another version is Active.",
  },
  NoAddresses: {
    conditions: ["AddressesConfigured", "Ready"],
    meaning: "Add at least one SupportAddress whose domainRef names this SmtpDomain.",
  },
  SecretConflict: {
    conditions: ["CredentialsIssued", "CertificateReady", "RelayAvailable", "Stalled", "Ready"],
    meaning:
      "A Secret the operator would create already exists and is not owned by this SmtpDomain. The operator never adopts or overwrites it: rename or delete it.",
  },
  ObjectConflict: {
    conditions: ["RelayAvailable", "Stalled", "Ready"],
    meaning:
      "A relay Deployment, Service, NetworkPolicy or PodDisruptionBudget of the name the operator would create already exists and is not owned by this SmtpDomain. The operator never adopts or overwrites it: rename or delete it.",
  },
  SecretNotFound: {
    conditions: ["CredentialsIssued", "CertificateReady", "RelayAvailable", "Stalled", "Ready"],
    meaning: "A Secret named in spec (secretRef, tls.secretName, privateKeySecretRef) does not exist in the namespace.",
  },
  SecretInvalid: {
    conditions: ["CredentialsIssued", "CertificateReady", "RelayAvailable", "Stalled", "Ready"],
    meaning: "A Secret named in spec lacks a required key, or its value is malformed; the message names the key.",
  },
  Expired: {
    conditions: ["CertificateReady", "Stalled", "Ready"],
    meaning: "The relay's certificate has expired: customers' servers that verify it refuse to relay. Renew it.",
  },
  NotYetValid: {
    conditions: ["CertificateReady", "Ready"],
    meaning: "The relay's certificate is not valid yet (its notBefore is in the future; check clocks).",
  },
  KeyMismatch: {
    conditions: ["CertificateReady", "Stalled", "Ready"],
    meaning: "tls.key in the relay's TLS Secret is not the private key of the certificate in tls.crt.",
  },
  HostnamesNotCovered: {
    conditions: ["CertificateReady", "Stalled", "Ready"],
    meaning:
      "The relay's certificate does not name every host in spec.relay.hostnames (or the default relay host name), so servers that verify it refuse it. Reissue it with those names.",
  },
  HostnameConflict: {
    conditions: ["CertificateReady", "Stalled", "Ready"],
    meaning:
      "A name in spec.relay.hostnames belongs to another SmtpDomain, in this namespace or another: a host name is in one relay certificate only. Another domain's default relay host name is always its own; any other name belongs to the domain that listed it first (oldest creationTimestamp, then namespace and name). The name is left out of this relay's certificate; the message names the holder only when it is in this namespace. Remove the name, or leave it: it comes to this domain by itself once no other domain holds it.",
  },
  HostnameNotAllowed: {
    conditions: ["CertificateReady", "Stalled", "Ready"],
    meaning:
      "A name in spec.relay.hostnames is not under the installation's allowed host-name suffixes (--allowed-hostname-suffixes; wildcards are never allowed). The operator issues no certificate for the domain and does not serve it under a referenced certificate either; use names under an allowed suffix, or drop spec.relay.hostnames for the default relay host name.",
  },
  CAInvalid: {
    conditions: ["CertificateReady", "Stalled", "Ready"],
    meaning: "The operator's CA Secret is malformed; delete it to have a new CA issued (relay certificates are then reissued).",
  },
  SystemDomain: {
    conditions: ["Stalled", "Ready"],
    meaning:
      "spec.domain is one of the helpdesk's own system domains (--system-domains), or under one: it can never be connected. The operator creates nothing for it (no credentials, certificate, relay or Service); delete the SmtpDomain. Its addresses say SystemAddress.",
  },
  DomainConflict: {
    conditions: ["Stalled", "Ready"],
    meaning:
      "The same domain is connected in another namespace (account) that claimed it earlier. The earlier one keeps working; delete one of them.",
  },

  // SupportAddress problems
  DomainNotFound: { conditions: ["DomainReady", "Ready"], meaning: "The SmtpDomain named in domainRef does not exist in this namespace." },
  DomainNotReady: { conditions: ["DomainReady", "Ready"], meaning: "The SmtpDomain exists but is not Ready; see its conditions." },
  DomainMismatch: {
    conditions: ["DomainReady", "Stalled", "Ready"],
    meaning: "The address is not in its SmtpDomain's domain. Inbound and outbound use the same domain.",
  },
  SystemAddress: {
    conditions: ["DomainReady", "Stalled", "Ready"],
    meaning: "The address is in one of the helpdesk's own system domains, which cannot be connected.",
  },
  LimitExceeded: {
    conditions: ["DomainReady", "Stalled", "Ready"],
    meaning:
      "More domains or addresses than the account's limits (defaults: 50 addresses per domain, 4 domains and 200 addresses per namespace). The oldest are served; this one is not until others are removed.",
  },
  AddressConflict: {
    conditions: ["DomainReady", "Stalled", "Ready"],
    meaning: "The same address is connected in another namespace that claimed it earlier. The earlier one keeps working.",
  },
  CredentialsSecretNotFound: {
    conditions: ["DomainReady", "Stalled", "Ready"],
    meaning: "The Secret named in outbound.credentialsSecretRef does not exist.",
  },
  CredentialsSecretInvalid: {
    conditions: ["DomainReady", "Stalled", "Ready"],
    meaning: "The outbound credentials Secret must have non-empty `username` and `password` keys.",
  },

  // Verification failures (machine-readable, one per cause)
  VerificationTimedOut: {
    conditions: ["InboundVerified", "OutboundVerified", "Ready"],
    meaning:
      "The token did not come back within verification.timeout (Authenticated mode). Check that the customer's server relays the support address to the relay with the domain's current credentials.",
  },
  InvalidCredentials: {
    conditions: ["OutboundVerified", "Ready"],
    meaning: "The customer's SMTP server refused AUTH with this address's credentials; fix the credentials Secret.",
  },
  TLSRequired: {
    conditions: ["OutboundVerified", "Ready"],
    meaning:
      "The customer's SMTP server did not offer TLS (no STARTTLS, or no TLS on the implicit port). The relay never sends without TLS.",
  },
  CertificateUntrusted: {
    conditions: ["OutboundVerified", "Ready"],
    meaning:
      "The customer's SMTP server presented a certificate that does not verify; set outbound.caSecretRef to its CA, or fix the certificate.",
  },
  ConnectionRefused: {
    conditions: ["OutboundVerified", "Ready"],
    meaning: "The customer's SMTP server refused the connection; check outbound.host and outbound.port.",
  },
  ConnectionTimedOut: {
    conditions: ["OutboundVerified", "Ready"],
    meaning: "The customer's SMTP server did not answer in time; check the host, port and firewalls.",
  },
  SenderRejected: {
    conditions: ["OutboundVerified", "Ready"],
    meaning: "The customer's server refused the support address as sender (incorrect From for these credentials).",
  },
  RecipientRejected: {
    conditions: ["InboundVerified", "OutboundVerified", "Ready"],
    meaning: "A server on the path refused the support address as recipient.",
  },
  MessageRejected: {
    conditions: ["InboundVerified", "OutboundVerified", "Ready"],
    meaning: "A server on the path refused the verification message itself (5xx after DATA); its reply is in the message.",
  },
  Deferred: {
    conditions: ["InboundVerified", "OutboundVerified", "Ready"],
    meaning: "A server on the path answered with a temporary failure (4xx); the next attempt follows automatically.",
  },
  ConnectionFailed: {
    conditions: ["InboundVerified", "OutboundVerified", "Ready"],
    meaning: "The connection failed for another reason (DNS, reset, protocol error); the message says which.",
  },
  RelayUnreachable: {
    conditions: ["InboundVerified", "OutboundVerified", "Ready"],
    meaning: "The operator could not reach the domain's relay control API to send or check a verification; check the relay Deployment.",
  },
  ArrivedUnauthenticated: {
    conditions: ["InboundVerified", "OutboundVerified", "Ready"],
    meaning:
      "The token arrived, but not through the authenticated relay (e.g. forwarded to port 25 while spec.inbound.mode is Authenticated): the customer's server delivers this address without relaying it with the domain's credentials. Relay it with the current credentials, or set spec.inbound.mode: Forwarded if the customer's mail service can only forward.",
  },
  ArrivedUnverified: {
    conditions: ["OutboundVerified", "Ready"],
    meaning:
      "Forwarded mode: the outbound verification email came back forwarded, but neither with the relay's DKIM signature (d=<domain>) intact nor under an ARC seal of a trusted sealer (--trusted-arc-sealers), so the helpdesk cannot tell the customer's forwarded mail from anyone's. Make the forward keep the message unchanged (no disclaimer, footer or subject tag on forwarded mail), or add the mail service's ARC sealer (e.g. microsoft.com, google.com) to the installation's trusted sealers.",
  },
  ForwardingNotSetUp: {
    conditions: ["InboundVerified", "OutboundVerified", "Ready"],
    meaning:
      "Forwarded mode: the token did not come back to the relay's forwarded listener within verification.timeout. Set up forwarding of the support address to the relay (Service port 25, status.relay.endpoint) keeping the recipient unchanged (docs/mail-servers.md: Microsoft 365 / Google Workspace), allow the relay's egress addresses on the customer's side, and do not greylist the verification emails.",
  },
  ArrivedWrongDomain: {
    conditions: ["InboundVerified", "OutboundVerified", "Ready"],
    meaning: "The token arrived authenticated with another domain's credentials.",
  },
  ArrivedRevokedCredential: {
    conditions: ["InboundVerified", "OutboundVerified", "Ready"],
    meaning:
      "The customer's server still uses a revoked credential version; install the current one from its Secret. In Forwarded mode every version is revoked: set up forwarding to port 25 instead of relaying with AUTH.",
  },
} as const satisfies Record<string, Reason>;

export type ReasonName = keyof typeof reasons;
