// The objects most tests apply: the SmtpDomain example-com and its support
// address support@example.com, with what a test changes as options.

/**
 * The SmtpDomain example-com in `namespace`: example.com (unless `domain`), with spec.inbound.credentials when given,
 * delivering inbound mail over plain SMTP to ingest.helpdesk.svc:25 (unless `delivery`), one relay replica with
 * `relay` added.
 */
export function smtpDomainManifest(
  namespace: string,
  {
    domain = "example.com",
    credentials,
    delivery = { host: "ingest.helpdesk.svc", port: 25 },
    relay = {},
  }: { domain?: string; credentials?: object[]; delivery?: { host: string; port: number }; relay?: object } = {},
) {
  return {
    apiVersion: "smtpconnector.dev/v1alpha1",
    kind: "SmtpDomain",
    metadata: { name: "example-com", namespace },
    spec: {
      domain,
      inbound: { ...(credentials ? { credentials } : {}), delivery: { smtp: { ...delivery, tls: "None" } } },
      relay: { replicas: 1, ...relay },
    },
  };
}

/** The SupportAddress support (support@example.com) of example-com in `namespace`, sending through `outbound`. */
export function supportAddressManifest(namespace: string, outbound: object, extra: { verification?: object } = {}) {
  return {
    apiVersion: "smtpconnector.dev/v1alpha1",
    kind: "SupportAddress",
    metadata: { name: "support", namespace },
    spec: {
      address: "support@example.com",
      domainRef: { name: "example-com" },
      outbound,
      ...(extra.verification ? { verification: extra.verification } : {}),
    },
  };
}
