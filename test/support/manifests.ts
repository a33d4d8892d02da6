// The objects most tests apply: the SmtpDomain example-com and its support
// address support@example.com, with what a test changes as options.

/**
 * The SmtpDomain example-com in `namespace`: example.com (unless `domain`), with spec.inbound.credentials when given
 * and `inbound`'s other fields added, delivering inbound mail over plain SMTP to ingest.helpdesk.svc:25 (unless
 * `delivery`), spec.dkim when given, one relay replica with `relay` added.
 */
export function smtpDomainManifest(
  namespace: string,
  {
    domain = "example.com",
    credentials,
    inbound = {},
    delivery = { host: "ingest.helpdesk.svc", port: 25 },
    dkim,
    relay = {},
  }: {
    domain?: string;
    credentials?: object[];
    inbound?: Record<string, unknown>;
    delivery?: { host: string; port: number };
    dkim?: object;
    relay?: object;
  } = {},
) {
  return {
    apiVersion: "smtpconnector.dev/v1alpha1",
    kind: "SmtpDomain",
    metadata: { name: "example-com", namespace },
    spec: {
      domain,
      inbound: { ...(credentials ? { credentials } : {}), ...inbound, delivery: { smtp: { ...delivery, tls: "None" } } },
      ...(dkim ? { dkim } : {}),
      relay: { replicas: 1, ...relay },
    },
  };
}

/**
 * The SupportAddress support (support@example.com, unless `name` and `address`) of example-com in `namespace`, sending
 * through `outbound`.
 */
export function supportAddressManifest(
  namespace: string,
  outbound: object,
  extra: { verification?: object; name?: string; address?: string } = {},
) {
  return {
    apiVersion: "smtpconnector.dev/v1alpha1",
    kind: "SupportAddress",
    metadata: { name: extra.name ?? "support", namespace },
    spec: {
      address: extra.address ?? "support@example.com",
      domainRef: { name: "example-com" },
      outbound,
      ...(extra.verification ? { verification: extra.verification } : {}),
    },
  };
}

/** A Secret `name` in `namespace` holding a login (username and password), as an address's outbound server wants it. */
export function loginSecretManifest(namespace: string, name: string, login: { username: string; password: string }) {
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name, namespace },
    stringData: { username: login.username, password: login.password },
  };
}
