// The single source of truth of the smtpconnector.dev/v1alpha1 API.
//
// From these TypeBox schemas come: the CRD manifests in crds/ (hack/generate.ts,
// checked for drift by a unit test), the TypeScript types the operator and tests
// use (Static<...>), and runtime validation at the operator's boundary
// (crds/validate.ts). Every field carries the description `kubectl explain`
// shows; every rule checkable inside one object is a CEL rule with a message a
// platform engineer can act on.
import { Kind, Type, TypeRegistry, type Static, type TSchema, type TLiteral, type TUnion, type UnsafeOptions } from "@sinclair/typebox";
import { domainPattern, localPartLengthPattern, localPartMaxLength, mailboxMaxLength, mailboxPattern } from "../relay/contract/mailbox.js";

export const group = "smtpconnector.dev";
export const version = "v1alpha1";
export const apiVersion = `${group}/${version}`;
export const category = "smtpconnector";

// ---------------------------------------------------------------------------
// Building blocks

type Rule = { rule: string; message: string; reason?: string; fieldPath?: string };
const rules = (...list: Rule[]) => ({ "x-kubernetes-validations": list });

/** A string enum; rendered as `enum` in the CRD (see crds/render.ts). */
function Enum<const V extends readonly string[]>(
  values: V,
  options: { description: string; default?: V[number] },
): TUnion<TLiteral<V[number]>[]> {
  return Type.Union(
    values.map((v) => Type.Literal(v)),
    options,
  );
}

const immutable = (what: string, hint: string): Rule => ({
  rule: "self == oldSelf",
  message: `${what} is immutable: ${hint}`,
});

/** A regular expression as the body of a CEL string literal (either quote; the patterns hold neither). */
const cel = (pattern: string) => pattern.replaceAll("\\", "\\\\");
// DNS names in lowercase without a trailing dot (RFC 1035 labels, 253 max): a mailbox's domain too.
const dnsNameRegex = cel(domainPattern);
// A plain mailbox, as the relay parses one (relay/contract/mailbox.ts): dot-atom
// local part, lowercase DNS domain. No quotes, comments, source routes, `%` or `!`
// routing or address literals: these are the shapes that let a recipient check
// and a router disagree.
const mailboxRegex = cel(mailboxPattern);
// Go-style durations as CEL's duration() accepts them: 90s, 10m, 168h, 1h30m.
const durationPattern = "^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$";

const DNSName = (description: string) =>
  Type.String({
    description,
    minLength: 1,
    maxLength: 253,
    ...rules({
      rule: `self.matches('${dnsNameRegex}')`,
      message: "must be a lowercase DNS name such as mail.example.com, without a trailing dot",
    }),
  });

const Duration = (description: string, defaultValue?: string) =>
  Type.String({ description, pattern: durationPattern, maxLength: 32, ...(defaultValue ? { default: defaultValue } : {}) });

// An integer or a string (rendered as x-kubernetes-int-or-string; see crds/render.ts). A kind of its own
// so that crds/validate.ts can check it: TypeBox knows no schema without a type.
const intOrStringKind = "SmtpConnectorIntOrString";
if (!TypeRegistry.Has(intOrStringKind))
  TypeRegistry.Set(intOrStringKind, (_schema, value) => typeof value === "string" || Number.isInteger(value));
const IntOrString = (description: string, options: UnsafeOptions) =>
  Type.Unsafe<string | number>({ description, "x-kubernetes-int-or-string": true, ...options, [Kind]: intOrStringKind });

// A Kubernetes quantity, as a container's resources take it: 500m, 2, 256Mi.
const Quantity = (description: string) =>
  IntOrString(description, rules({ rule: "isQuantity(string(self))", message: "must be a quantity such as 500m, 2, 256Mi or 1Gi" }));

const ResourceList = (description: string) =>
  Type.Object(
    {
      cpu: Type.Optional(Quantity("CPU, e.g. 250m or 1.")),
      memory: Type.Optional(Quantity("Memory, e.g. 256Mi.")),
    },
    { description },
  );

/** Each resource's request, where both are given, at most its limit (CEL: the quantity library). */
const requestWithinLimit = (resource: string) =>
  `!has(self.requests.${resource}) || !has(self.limits.${resource}) || quantity(string(self.requests.${resource})).compareTo(quantity(string(self.limits.${resource}))) <= 0`;

const ObjectName = (description: string) =>
  Type.String({
    description,
    minLength: 1,
    maxLength: 253,
    pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
  });

const Port = (description: string, defaultValue?: number) =>
  Type.Integer({ description, minimum: 1, maximum: 65535, format: "int32", ...(defaultValue ? { default: defaultValue } : {}) });

const SecretKeySelector = (description: string, defaultKey: string) =>
  Type.Object(
    {
      name: ObjectName("Name of a Secret in the same namespace."),
      key: Type.Optional(
        Type.String({
          description: `Key inside the Secret. Defaults to "${defaultKey}".`,
          minLength: 1,
          maxLength: 253,
          default: defaultKey,
        }),
      ),
    },
    { description },
  );

const LocalSecretReference = (description: string) =>
  Type.Object({ name: ObjectName("Name of a Secret in the same namespace.") }, { description });

const Timestamp = (description: string) => Type.String({ description, format: "date-time" });

/** metav1.Condition, as the API conventions define it. */
export const Condition = Type.Object(
  {
    type: Type.String({
      description: "Type of condition in CamelCase, e.g. Ready.",
      maxLength: 316,
      pattern: "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
    }),
    status: Enum(["True", "False", "Unknown"] as const, { description: "Status of the condition: True, False or Unknown." }),
    observedGeneration: Type.Optional(
      Type.Integer({ description: "The .metadata.generation the condition was set from.", minimum: 0, format: "int64" }),
    ),
    lastTransitionTime: Timestamp("Last time the condition changed status."),
    reason: Type.String({
      description: "A CamelCase word naming the cause; stable, documented in docs/api.md.",
      minLength: 1,
      maxLength: 1024,
      pattern: "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
    }),
    message: Type.String({ description: "Human-readable details: what happened and what to do about it.", maxLength: 32768 }),
  },
  { description: "A condition in the standard Kubernetes shape (metav1.Condition)." },
);
export type Condition = Static<typeof Condition>;

const Conditions = (description: string) =>
  Type.Array(Condition, {
    description,
    maxItems: 16,
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
  });

// ---------------------------------------------------------------------------
// SmtpDomain

export const CredentialState = ["Active", "Revoked"] as const;
export const CredentialStatusState = ["Active", "Revoked", "Expired"] as const;

const CredentialVersionSpec = Type.Object(
  {
    version: Type.Integer({
      description: "Version number of this inbound credential, 1 or higher. A new version is a rotation.",
      minimum: 1,
      maximum: 1_000_000,
      format: "int32",
    }),
    state: Type.Optional(
      Enum(CredentialState, {
        description:
          "Active accepts AUTH with this version's username and password. Revoked refuses it on the next AUTH, within seconds and without a relay restart (emergency revocation). A revoked version cannot become Active again.",
        default: "Active",
      }),
    ),
    secretRef: Type.Optional(
      LocalSecretReference(
        "A Secret you provide with `username` and `password` keys for this version, instead of one the operator generates. The operator reads it and never changes it.",
      ),
    ),
  },
  {
    description: "One version of the domain's inbound credentials.",
    ...rules({
      rule: "!has(oldSelf.state) || oldSelf.state != 'Revoked' || self.state == 'Revoked'",
      message: "a revoked credential version cannot be made Active again: add a new version instead",
    }),
  },
);

export const InboundMode = ["Authenticated", "Forwarded"] as const;

const InboundSpec = Type.Object(
  {
    mode: Type.Optional(
      Enum(InboundMode, {
        description:
          "How the customer's mail reaches the relay. Authenticated: the customer's server relays it with SMTP AUTH over TLS (port 587/465) using the domain's credentials. Forwarded: the customer's mail service (e.g. Microsoft 365 or Google Workspace, which cannot relay with AUTH) forwards the support addresses' mail to the relay's port 25 without AUTH; no inbound credentials are issued, and the relay's Authentication-Results say what it could check (SPF, DKIM, DMARC, ARC from a trusted sealer). The outbound half is the same in both. Switching to Forwarded revokes every credential version issued before, for good (docs/adr/0014-forwarded-inbound-mode.md).",
        default: "Authenticated",
      }),
    ),
    authProtocol: Type.Optional(
      Enum(["PLAIN", "LOGIN"] as const, {
        description: "SASL mechanism the customer's server uses to authenticate to the relay. PLAIN unless the server can only do LOGIN.",
        default: "PLAIN",
      }),
    ),
    credentials: Type.Optional(
      Type.Array(CredentialVersionSpec, {
        description:
          "Inbound credential versions (Authenticated mode only). The operator issues a Secret for each version that has no secretRef. To rotate, add a version with the next number: both stay valid until the older one is revoked or its grace period ends. At most two versions may be Active. Omitted: one version, the next number never used (1 for a new domain).",
        minItems: 1,
        maxItems: 16,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["version"],
        ...rules({
          rule: "self.filter(c, !has(c.state) || c.state == 'Active').size() <= 2",
          message: "at most two credential versions may be Active at once: revoke the oldest before adding another",
        }),
      }),
    ),
    gracePeriod: Type.Optional(
      Duration(
        "How long an older Active version stays valid after a newer version is issued, e.g. 168h. After it, the older version expires (status shows Expired). Empty keeps it valid until it is revoked.",
      ),
    ),
    allowedSourceRanges: Type.Optional(
      Type.Array(Type.String({ maxLength: 43 }), {
        description:
          "CIDR ranges the customer's mail server connects from, e.g. 203.0.113.0/24 (in Forwarded mode: the mail service's egress ranges). Applied to the relay Service (loadBalancerSourceRanges) and NetworkPolicy, and behind a PROXY-protocol balancer (spec.relay.proxyProtocol) by the relay to the client each header names. Empty allows any source; AUTH is required either way in Authenticated mode, and in Forwarded mode only the support addresses are accepted as recipients.",
        maxItems: 64,
        "x-kubernetes-list-type": "set",
        ...rules({
          rule: "self.all(r, isCIDR(r))",
          message: "allowedSourceRanges must be CIDR ranges such as 203.0.113.0/24 or 2001:db8::/32",
        }),
      }),
    ),
    delivery: Type.Object(
      {
        smtp: Type.Optional(
          Type.Object(
            {
              host: Type.String({
                description: "Host name or IP address of the helpdesk's SMTP or LMTP ingestion endpoint.",
                minLength: 1,
                maxLength: 253,
                ...rules({
                  rule: `self.matches('${dnsNameRegex}') || isIP(self)`,
                  message: "host must be a lowercase DNS name such as ingest.helpdesk.svc, or an IP address",
                }),
              }),
              port: Type.Optional(Port("Port of the ingestion endpoint.", 25)),
              protocol: Type.Optional(
                Enum(["SMTP", "LMTP"] as const, { description: "Protocol spoken to the ingestion endpoint.", default: "SMTP" }),
              ),
              tls: Type.Optional(
                Enum(["None", "StartTLS", "Implicit"] as const, {
                  description: "TLS towards the ingestion endpoint. None is for endpoints inside the cluster network only.",
                  default: "StartTLS",
                }),
              ),
              authSecretRef: Type.Optional(
                LocalSecretReference("A Secret with `username` and `password` keys, when the ingestion endpoint requires AUTH."),
              ),
            },
            {
              description: "Deliver inbound mail over SMTP or LMTP.",
              ...rules({
                rule: "!has(self.authSecretRef) || (has(self.tls) && self.tls != 'None')",
                message: "authSecretRef requires TLS: set tls to StartTLS or Implicit so the password is never sent in clear",
              }),
            },
          ),
        ),
        webhook: Type.Optional(
          Type.Object(
            {
              url: Type.String({
                description: "HTTPS URL that receives each message (raw RFC 5322 plus JSON metadata).",
                maxLength: 2048,
                ...rules({ rule: "self.startsWith('https://') && isURL(self)", message: "webhook url must be an https:// URL" }),
              }),
              signingSecretRef: SecretKeySelector("The Secret key holding the HMAC-SHA256 key that signs every request.", "key"),
            },
            { description: "Deliver inbound mail to an HTTPS webhook." },
          ),
        ),
      },
      {
        description:
          "Where the relay delivers inbound mail (the helpdesk's ingestion). The relay answers 250 only after this next hop accepted the message.",
        ...rules({ rule: "has(self.smtp) != has(self.webhook)", message: "set exactly one of delivery.smtp or delivery.webhook" }),
      },
    ),
  },
  {
    description:
      "The inbound direction: the customer's mail reaching the relay, authenticated (its server relays with SMTP AUTH) or forwarded (its mail service forwards to port 25).",
    ...rules({
      rule: "!has(self.mode) || self.mode != 'Forwarded' || !has(self.credentials)",
      message:
        "spec.inbound.credentials is not allowed with mode: Forwarded (a forwarding mail service does not authenticate, so no inbound credentials are issued; the versions issued before are revoked for good when the mode changes): remove spec.inbound.credentials",
      fieldPath: ".credentials",
    }),
  },
);

const DKIMKeySpec = Type.Object(
  {
    selector: Type.String({
      description: "DKIM selector: the record is published at <selector>._domainkey.<domain>. A new key gets a new selector.",
      minLength: 1,
      maxLength: 63,
      ...rules({
        rule: "self.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')",
        message: "selector must be a lowercase DNS label such as smtpc1",
      }),
    }),
    algorithm: Type.Optional(
      Enum(["RSA2048", "Ed25519"] as const, {
        description:
          "Key type. The operator generates it when no privateKeySecretRef is given. Sign Ed25519 alongside an RSA key (RFC 8463): many verifiers do not check Ed25519.",
        default: "RSA2048",
      }),
    ),
    privateKeySecretRef: Type.Optional(
      SecretKeySelector(
        "A Secret key holding a PEM private key you provide. Without it the operator generates a key into a Secret it owns.",
        "tls.key",
      ),
    ),
    recordPublished: Type.Optional(
      Type.Boolean({
        description:
          "Set to true once the TXT record shown in status.dkim.records is published in DNS. The relay never signs with a key whose record is not confirmed.",
        default: false,
      }),
    ),
  },
  { description: "One DKIM key." },
);

const DKIMSpec = Type.Object(
  {
    keys: Type.Array(DKIMKeySpec, {
      description:
        "DKIM keys, oldest first. Per algorithm the relay signs with the last key whose record is published: to rotate, add a key with a new selector, publish its record, set recordPublished, then remove the old key after a grace period.",
      minItems: 1,
      maxItems: 4,
      "x-kubernetes-list-type": "map",
      "x-kubernetes-list-map-keys": ["selector"],
    }),
  },
  { description: "DKIM signing of outbound mail with d=<domain>. Omit to send unsigned." },
);

// ---------------------------------------------------------------------------
// The relay pods' template (Strimzi's `template.pod` is the shape): Kubernetes' own
// scheduling and metadata fields, typed so `kubectl explain` shows them and a typo
// is refused when the SmtpDomain is applied, not when its Deployment is.

/** Labels the operator sets on every relay pod: its selector and ownership. Never taken from a template. */
export const reservedPodLabels = [
  "app.kubernetes.io/name",
  "app.kubernetes.io/instance",
  "app.kubernetes.io/managed-by",
  "smtpconnector.dev/domain",
] as const;

const StringMap = (description: string, valueLength = 63 * 1024, extra: object = {}) =>
  Type.Record(Type.String(), Type.String({ maxLength: valueLength }), { description, maxProperties: 64, ...extra });

const keyName = (description: string) => Type.String({ description, minLength: 1, maxLength: 317 });

const LabelSelectorRequirement = Type.Object(
  {
    key: keyName("The label key."),
    operator: Enum(["In", "NotIn", "Exists", "DoesNotExist"] as const, { description: "In, NotIn, Exists or DoesNotExist." }),
    values: Type.Optional(
      Type.Array(Type.String({ maxLength: 63 }), {
        description: "Values for In and NotIn; empty for Exists and DoesNotExist.",
        maxItems: 64,
      }),
    ),
  },
  { description: "One label selector requirement." },
);

const LabelSelector = (description: string) =>
  Type.Object(
    {
      matchLabels: Type.Optional(StringMap("Labels a pod (or namespace) must carry, all of them.", 63)),
      matchExpressions: Type.Optional(
        Type.Array(LabelSelectorRequirement, { description: "Requirements, all of which must hold.", maxItems: 16 }),
      ),
    },
    { description },
  );

const NodeSelectorTerm = Type.Object(
  {
    matchExpressions: Type.Optional(
      Type.Array(
        Type.Object(
          {
            key: keyName("The node label key."),
            operator: Enum(["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"] as const, {
              description: "In, NotIn, Exists, DoesNotExist, Gt or Lt.",
            }),
            values: Type.Optional(
              Type.Array(Type.String({ maxLength: 63 }), {
                description: "Values; one integer for Gt and Lt, none for Exists and DoesNotExist.",
                maxItems: 64,
              }),
            ),
          },
          { description: "One node label requirement." },
        ),
        { description: "Requirements on the node's labels.", maxItems: 16 },
      ),
    ),
    matchFields: Type.Optional(
      Type.Array(
        Type.Object(
          {
            key: keyName("The node field, e.g. metadata.name."),
            operator: Enum(["In", "NotIn"] as const, { description: "In or NotIn." }),
            values: Type.Optional(Type.Array(Type.String({ maxLength: 253 }), { description: "Values.", maxItems: 64 })),
          },
          { description: "One node field requirement." },
        ),
        { description: "Requirements on the node's fields.", maxItems: 16 },
      ),
    ),
  },
  { description: "A node selector term: all its requirements must hold." },
);

const PodAffinityTerm = Type.Object(
  {
    labelSelector: Type.Optional(LabelSelector("The pods this term is about.")),
    namespaceSelector: Type.Optional(LabelSelector("The namespaces whose pods count; with namespaces, either matches.")),
    namespaces: Type.Optional(
      Type.Array(Type.String({ maxLength: 63 }), { description: "Namespaces whose pods count; default: the relay's own.", maxItems: 64 }),
    ),
    topologyKey: Type.String({
      description: "The node label whose value makes a topology domain, e.g. kubernetes.io/hostname.",
      minLength: 1,
      maxLength: 317,
    }),
    matchLabelKeys: Type.Optional(
      Type.Array(Type.String({ maxLength: 317 }), {
        description: "Pod label keys whose values are added to labelSelector as In requirements.",
        maxItems: 16,
      }),
    ),
    mismatchLabelKeys: Type.Optional(
      Type.Array(Type.String({ maxLength: 317 }), {
        description: "Pod label keys whose values are added to labelSelector as NotIn requirements.",
        maxItems: 16,
      }),
    ),
  },
  { description: "Pods (by label, in some namespaces) a relay pod should or must share, or avoid, a topology domain with." },
);

const WeightedPodAffinityTerm = Type.Object(
  {
    weight: Type.Integer({
      description: "1 to 100: added to a node's score when the term holds.",
      minimum: 1,
      maximum: 100,
      format: "int32",
    }),
    podAffinityTerm: PodAffinityTerm,
  },
  { description: "A preferred pod (anti-)affinity term with its weight." },
);

const PodAffinity = (description: string) =>
  Type.Object(
    {
      requiredDuringSchedulingIgnoredDuringExecution: Type.Optional(
        Type.Array(PodAffinityTerm, { description: "Terms that must hold for the pod to be scheduled.", maxItems: 16 }),
      ),
      preferredDuringSchedulingIgnoredDuringExecution: Type.Optional(
        Type.Array(WeightedPodAffinityTerm, { description: "Terms the scheduler prefers, by weight.", maxItems: 16 }),
      ),
    },
    { description },
  );

const Affinity = Type.Object(
  {
    nodeAffinity: Type.Optional(
      Type.Object(
        {
          requiredDuringSchedulingIgnoredDuringExecution: Type.Optional(
            Type.Object(
              {
                nodeSelectorTerms: Type.Array(NodeSelectorTerm, {
                  description: "Terms, any of which must hold.",
                  minItems: 1,
                  maxItems: 16,
                }),
              },
              { description: "Nodes the pod must be scheduled on." },
            ),
          ),
          preferredDuringSchedulingIgnoredDuringExecution: Type.Optional(
            Type.Array(
              Type.Object(
                {
                  weight: Type.Integer({
                    description: "1 to 100: added to a node's score when the term holds.",
                    minimum: 1,
                    maximum: 100,
                    format: "int32",
                  }),
                  preference: NodeSelectorTerm,
                },
                { description: "A preferred node selector term with its weight." },
              ),
              { description: "Nodes the scheduler prefers, by weight.", maxItems: 16 },
            ),
          ),
        },
        { description: "Which nodes the relay pods run on (node labels and fields)." },
      ),
    ),
    podAffinity: Type.Optional(PodAffinity("Pods the relay pods should or must run near.")),
    podAntiAffinity: Type.Optional(PodAffinity("Pods the relay pods should or must run apart from.")),
  },
  { description: "Node and pod (anti-)affinity of the relay pods, as Kubernetes' pod spec takes it." },
);

const Toleration = Type.Object(
  {
    key: Type.Optional(Type.String({ description: "The taint key; empty with operator Exists tolerates every taint.", maxLength: 317 })),
    operator: Type.Optional(Enum(["Exists", "Equal"] as const, { description: "Equal (the default) or Exists." })),
    value: Type.Optional(Type.String({ description: "The taint value, for Equal.", maxLength: 63 })),
    effect: Type.Optional(
      Enum(["NoSchedule", "PreferNoSchedule", "NoExecute"] as const, { description: "The taint effect; empty tolerates every effect." }),
    ),
    tolerationSeconds: Type.Optional(
      Type.Integer({ description: "For NoExecute: how long the pod stays on a node after the taint is added.", format: "int64" }),
    ),
  },
  {
    description: "A toleration, as Kubernetes' pod spec takes it.",
    ...rules(
      {
        rule: "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
        message: "a toleration with operator Exists takes no value",
      },
      {
        rule: "(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
        message: "a toleration without a key must have operator Exists (it then tolerates every taint)",
      },
    ),
  },
);

const TopologySpreadConstraint = Type.Object(
  {
    maxSkew: Type.Integer({
      description: "How unevenly the relay pods may be spread: the most pods in one domain minus the fewest in another.",
      minimum: 1,
      format: "int32",
    }),
    topologyKey: Type.String({
      description: "The node label whose value makes a topology domain, e.g. kubernetes.io/hostname or topology.kubernetes.io/zone.",
      minLength: 1,
      maxLength: 317,
    }),
    whenUnsatisfiable: Enum(["DoNotSchedule", "ScheduleAnyway"] as const, {
      description: "DoNotSchedule (a hard rule) or ScheduleAnyway (a preference).",
    }),
    labelSelector: Type.Optional(LabelSelector("The pods counted; omitted, the operator fills in this domain's relay pods.")),
    minDomains: Type.Optional(
      Type.Integer({ description: "With DoNotSchedule: the fewest eligible domains counted.", minimum: 1, format: "int32" }),
    ),
    nodeAffinityPolicy: Type.Optional(
      Enum(["Honor", "Ignore"] as const, {
        description: "Whether the pod's node affinity and selector limit the domains counted (Honor, the default).",
      }),
    ),
    nodeTaintsPolicy: Type.Optional(
      Enum(["Honor", "Ignore"] as const, {
        description: "Whether nodes with taints the pod does not tolerate are counted (Ignore, the default, counts them).",
      }),
    ),
    matchLabelKeys: Type.Optional(
      Type.Array(Type.String({ maxLength: 317 }), {
        description: "Pod label keys whose values narrow the pods counted, e.g. pod-template-hash.",
        maxItems: 16,
      }),
    ),
  },
  { description: "A topology spread constraint, as Kubernetes' pod spec takes it." },
);

const PodSecurityIds = Type.Object(
  {
    runAsUser: Type.Optional(
      Type.Integer({
        description: "The user the relay runs as (default 65532); never 0.",
        minimum: 1,
        maximum: 2147483647,
        format: "int64",
      }),
    ),
    runAsGroup: Type.Optional(
      Type.Integer({ description: "The primary group (default 65532); never 0.", minimum: 1, maximum: 2147483647, format: "int64" }),
    ),
    fsGroup: Type.Optional(
      Type.Integer({
        description: "The group that owns the mounted volumes (default 65532); never 0.",
        minimum: 1,
        maximum: 2147483647,
        format: "int64",
      }),
    ),
    supplementalGroups: Type.Optional(
      Type.Array(Type.Integer({ minimum: 1, maximum: 2147483647, format: "int64" }), {
        description: "More groups; never 0.",
        maxItems: 16,
      }),
    ),
  },
  {
    description:
      "The user and group ids of the relay pods, e.g. for a platform that assigns each namespace a range (OpenShift). Only ids: the restricted Pod Security Standard settings (runAsNonRoot, seccomp RuntimeDefault, no privilege escalation, every capability dropped, a read-only root filesystem) are always set and cannot be changed.",
  },
);

export const RelayPodTemplate = Type.Object(
  {
    metadata: Type.Optional(
      Type.Object(
        {
          labels: Type.Optional(
            StringMap(
              "Labels added to every relay pod, e.g. cost labels. The operator's own (app.kubernetes.io/name, instance, managed-by, smtpconnector.dev/domain) cannot be set.",
              63,
              {
                ...rules({
                  rule: reservedPodLabels.map((key) => `!('${key}' in self)`).join(" && "),
                  message: `labels must not set the operator's own pod labels (${reservedPodLabels.join(", ")}): they select the relay pods`,
                }),
              },
            ),
          ),
          annotations: Type.Optional(StringMap("Annotations added to every relay pod, e.g. a service mesh opt-out.")),
        },
        { description: "Labels and annotations of the relay pods." },
      ),
    ),
    imagePullSecrets: Type.Optional(
      Type.Array(
        Type.Object(
          { name: ObjectName("A Secret of type kubernetes.io/dockerconfigjson in the SmtpDomain's namespace.") },
          { description: "A pull secret." },
        ),
        {
          description: "Pull secrets for the relay image (a private registry or mirror). Each must exist in the SmtpDomain's namespace.",
          maxItems: 16,
        },
      ),
    ),
    nodeSelector: Type.Optional(StringMap("Node labels the relay pods are scheduled by, e.g. kubernetes.io/os: linux.", 63)),
    tolerations: Type.Optional(
      Type.Array(Toleration, { description: "Taints the relay pods tolerate, e.g. of a node pool dedicated to mail.", maxItems: 32 }),
    ),
    affinity: Type.Optional(Affinity),
    topologySpreadConstraints: Type.Optional(
      Type.Array(TopologySpreadConstraint, {
        description:
          "How the relay pods spread over nodes and zones. Default: at most one pod more per node and per zone than elsewhere, as a preference (ScheduleAnyway); an empty list spreads nothing.",
        maxItems: 8,
      }),
    ),
    priorityClassName: Type.Optional(
      ObjectName("The PriorityClass of the relay pods (it must exist), e.g. to keep mail running when a node is short of resources."),
    ),
    securityContext: Type.Optional(PodSecurityIds),
  },
  {
    description:
      "The relay pods' template. Each field replaces the installation's default for it as a whole (the operator's --relay-pod-template, the chart's relay.template.pod); labels and annotations are merged key by key, the domain's value winning.",
  },
);
export type RelayPodTemplate = Static<typeof RelayPodTemplate>;

const RelaySpec = Type.Object(
  {
    replicas: Type.Optional(
      Type.Integer({
        description: "Relay pods. Two or more get a PodDisruptionBudget.",
        minimum: 1,
        maximum: 20,
        default: 2,
        format: "int32",
      }),
    ),
    service: Type.Optional(
      Type.Object(
        {
          type: Type.Optional(
            Enum(["ClusterIP", "NodePort", "LoadBalancer"] as const, {
              description: "Type of the Service the customer's server connects to.",
              default: "LoadBalancer",
            }),
          ),
          annotations: Type.Optional(
            Type.Record(Type.String(), Type.String(), { description: "Annotations for the Service, e.g. for a cloud load balancer." }),
          ),
        },
        { description: "The relay's customer-facing Service." },
      ),
    ),
    hostnames: Type.Optional(
      Type.Array(DNSName("A host name."), {
        description:
          "Host names the customer's server uses to reach the relay; they go into the operator-issued certificate and the client snippets.",
        maxItems: 16,
        "x-kubernetes-list-type": "set",
      }),
    ),
    tls: Type.Optional(
      Type.Object(
        {
          secretName: ObjectName(
            "A kubernetes.io/tls Secret with the relay's certificate and key, e.g. issued by cert-manager. Without it the operator issues a certificate from its own CA.",
          ),
        },
        { description: "The relay's TLS certificate." },
      ),
    ),
    resources: Type.Optional(
      Type.Object(
        {
          requests: Type.Optional(ResourceList("What each relay pod is scheduled with.")),
          limits: Type.Optional(ResourceList("What each relay pod may use at most.")),
        },
        {
          description:
            "CPU and memory of each relay pod. Replaces the defaults as a whole (requests cpu 100m and memory 128Mi, limit memory 512Mi); see Sizing in docs/operations.md.",
          ...rules({
            rule: `!has(self.requests) || !has(self.limits) || ((${requestWithinLimit("cpu")}) && (${requestWithinLimit("memory")}))`,
            message: "a request must not exceed its limit",
          }),
        },
      ),
    ),
    limits: Type.Optional(
      Type.Object(
        {
          maxMessageSize: Type.Optional(
            IntOrString(
              "Largest message the relay accepts, e.g. 50Mi (advertised as SIZE, enforced while DATA streams: 552 after the final dot). Default 25Mi. Capped by the installation's maximum (the operator's --relay-max-message-size); status.relay.limits shows what applies.",
              rules({
                rule: "isQuantity(string(self)) && quantity(string(self)).compareTo(quantity('1Ki')) >= 0 && quantity(string(self)).compareTo(quantity('1Gi')) <= 0",
                message: "maxMessageSize must be a size from 1Ki to 1Gi, such as 25Mi",
              }),
            ),
          ),
          maxRecipients: Type.Optional(
            Type.Integer({
              description:
                "Recipients per message. Default 50. Capped by the installation's maximum (the operator's --relay-max-recipients); status.relay.limits shows what applies.",
              minimum: 1,
              maximum: 1000,
              format: "int32",
            }),
          ),
        },
        { description: "Message limits of this domain's relay, within the installation's maximums." },
      ),
    ),
    proxyProtocol: Type.Optional(
      Type.Object(
        {
          trustedRanges: Type.Array(Type.String({ maxLength: 49 }), {
            description:
              "Addresses or CIDR ranges of the load balancers, as the relay pods see them, e.g. 10.0.12.0/24. Their connections must start with a PROXY header (version 1 or 2); from any other address a header is refused. Trust nothing but the balancers: a pod or node in a trusted range could claim any client address. Also let through by the relay's NetworkPolicy.",
            minItems: 1,
            maxItems: 32,
            "x-kubernetes-list-type": "set",
            ...rules(
              {
                rule: "self.all(r, isIP(r) || isCIDR(r))",
                message: "trustedRanges must be IP addresses or CIDR ranges such as 10.0.12.0/24",
              },
              {
                rule: "self.all(r, !isCIDR(r) || cidr(r).prefixLength() > 0)",
                message: "trustedRanges must not contain 0.0.0.0/0 or ::/0: any client could then name its own source address",
              },
            ),
          }),
        },
        {
          description:
            "PROXY protocol from a load balancer that terminates TCP and so hides the client's address (AWS NLB with proxy protocol, GCP TCP proxy, HAProxy): the relay's per-source limits, lockouts, logs and Received header then see the client the header names. Not needed where the balancer passes packets through: the Service's externalTrafficPolicy: Local keeps the client's address. See docs/security.md, PROXY protocol.",
        },
      ),
    ),
    template: Type.Optional(
      Type.Object(
        { pod: Type.Optional(RelayPodTemplate) },
        { description: "Templates of the objects the operator creates for the relay (Strimzi's shape): so far its pods." },
      ),
    ),
  },
  { description: "How the relay for this domain runs." },
);

export const SmtpDomainSpec = Type.Object(
  {
    domain: Type.String({
      description: "The customer's mail domain, e.g. example.com. Immutable.",
      minLength: 1,
      maxLength: 253,
      ...rules(
        {
          rule: `self.matches('${dnsNameRegex}')`,
          message: "domain must be a lowercase DNS name such as example.com, without a trailing dot",
        },
        immutable("domain", "create a new SmtpDomain to connect another domain"),
      ),
    }),
    inbound: InboundSpec,
    dkim: Type.Optional(DKIMSpec),
    relay: Type.Optional(RelaySpec),
  },
  { description: "SmtpDomainSpec declares a customer mail domain connected through the relay." },
);
export type SmtpDomainSpec = Static<typeof SmtpDomainSpec>;

const CredentialVersionStatus = Type.Object(
  {
    version: Type.Integer({ description: "The credential version.", format: "int32" }),
    secretName: Type.String({ description: "The Secret holding this version's username and password." }),
    username: Type.Optional(Type.String({ description: "The SASL username of this version (never the password)." })),
    state: Enum(CredentialStatusState, {
      description: "Active, Revoked, or Expired (its grace period ended after a newer version was issued).",
    }),
    createdAt: Type.Optional(Timestamp("When the version was issued.")),
    expiresAt: Type.Optional(Timestamp("When an older Active version stops being accepted, after a newer version was issued.")),
    lastUsedAt: Type.Optional(Timestamp("Last successful AUTH with this version, as reported by the relay.")),
    passwordSha256: Type.Optional(
      Type.String({
        description:
          "SHA-256 (hex) of the password issued for this version, recorded when it was issued: the only password the relay accepts for it, whatever its Secret says later (a Secret edited by hand is reported, never adopted). Not secret: an operator-issued password is 256 random bits.",
        pattern: "^[0-9a-f]{64}$",
      }),
    ),
  },
  { description: "The observed state of one inbound credential version." },
);

const DKIMRecordStatus = Type.Object(
  {
    selector: Type.String({ description: "The DKIM selector." }),
    name: Type.String({ description: "DNS name of the TXT record: <selector>._domainkey.<domain>." }),
    value: Type.String({ description: "The TXT record value to publish, ready to paste." }),
    signing: Type.Optional(Type.Boolean({ description: "Whether the relay signs with this selector now." })),
    published: Type.Optional(Type.Boolean({ description: "Whether the record is confirmed as published (spec recordPublished)." })),
  },
  { description: "A DKIM DNS record to publish." },
);

export const SmtpDomainStatus = Type.Object(
  {
    observedGeneration: Type.Optional(
      Type.Integer({ description: "The .metadata.generation the status was computed from.", format: "int64" }),
    ),
    conditions: Type.Optional(
      Conditions(
        "CredentialsIssued, CertificateReady, RelayAvailable, AddressesConfigured, Ready, DKIMRecordPublished, LimitsApplied; Reconciling and Stalled only while True.",
      ),
    ),
    credentials: Type.Optional(
      Type.Array(CredentialVersionStatus, {
        description: "Each inbound credential version with its Secret, state and last use.",
        maxItems: 16,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["version"],
      }),
    ),
    activeVersions: Type.Optional(Type.String({ description: 'The Active credential versions, e.g. "1,2" (for kubectl get).' })),
    inboundMode: Type.Optional(
      Enum(InboundMode, {
        description:
          "The inbound mode the relay pods serve. After a change of spec.inbound.mode it keeps the previous mode, with Reconciling True (ModeChanging), until the relay Deployment has rolled out with the new listeners; the credentials are revoked (or issued) and the Service changed at once.",
      }),
    ),
    revokedVersions: Type.Optional(
      Type.Array(Type.Integer({ format: "int32" }), {
        description:
          "Every credential version ever revoked or expired, kept after its entry leaves spec: such a version is never Active again and never reissued (a spec that lists it Active again is refused with VersionRevoked). Its Secret carries the same record (annotation smtpconnector.dev/revoked-at).",
        maxItems: 1024,
        "x-kubernetes-list-type": "set",
      }),
    ),
    addresses: Type.Optional(Type.Integer({ description: "Number of SupportAddresses served for this domain.", format: "int32" })),
    addressesNotServed: Type.Optional(
      Type.Integer({
        description:
          "Number of SupportAddresses naming this domain that are not served (over a limit, a conflict, another mail domain, a missing or malformed Secret); each one's DomainReady says why.",
        format: "int32",
      }),
    ),
    relay: Type.Optional(
      Type.Object(
        {
          endpoint: Type.Optional(Type.String({ description: "Where the customer's server connects, host:port." })),
          serviceName: Type.Optional(Type.String({ description: "The relay Service." })),
          limits: Type.Optional(
            Type.Object(
              {
                maxMessageBytes: Type.Integer({
                  description:
                    "Largest message the relay accepts, in bytes: spec.relay.limits.maxMessageSize (or the default) within the installation's maximum.",
                  format: "int64",
                }),
                maxRecipients: Type.Integer({
                  description:
                    "Recipients per message the relay accepts: spec.relay.limits.maxRecipients (or the default) within the installation's maximum.",
                  format: "int32",
                }),
              },
              { description: "The message limits the relay applies." },
            ),
          ),
        },
        { description: "The relay for this domain." },
      ),
    ),
    dkim: Type.Optional(
      Type.Object(
        {
          records: Type.Optional(
            Type.Array(DKIMRecordStatus, {
              description: "DNS records to publish, one per selector.",
              maxItems: 8,
              "x-kubernetes-list-type": "map",
              "x-kubernetes-list-map-keys": ["selector"],
            }),
          ),
          pending: Type.Optional(
            Type.String({ description: "Selectors whose DNS record still awaits publication, comma-separated (for kubectl get -o wide)." }),
          ),
        },
        { description: "DKIM state." },
      ),
    ),
    tls: Type.Optional(
      Type.Object(
        {
          secretName: Type.String({ description: "The kubernetes.io/tls Secret the relay serves." }),
          issuedByOperator: Type.Boolean({
            description:
              "Whether the operator issued it from the installation's CA (whose certificate is ca.crt in that Secret and in each credentials Secret).",
          }),
          dnsNames: Type.Optional(Type.Array(Type.String(), { description: "The certificate's subject alternative names.", maxItems: 64 })),
          issuer: Type.Optional(Type.String({ description: "The certificate's issuer." })),
          notAfter: Type.Optional(Timestamp("When the certificate expires.")),
          renewalTime: Type.Optional(Timestamp("When the operator renews it (operator-issued only).")),
          nextCA: Type.Optional(
            Type.Object(
              {
                fingerprint: Type.String({
                  description: "The next CA certificate's SHA-256 fingerprint (as openssl x509 -fingerprint -sha256 prints it).",
                  maxLength: 95,
                }),
                signsFrom: Timestamp(
                  "From when the next CA signs the relay's certificate: a customer's server that keeps its own copy of ca.crt must trust the new ca.crt (both CAs) by then.",
                ),
              },
              {
                description:
                  "Present while the installation's CA is being replaced and the new CA is announced but does not sign yet (operator-issued only): ca.crt in the credentials Secrets already holds both CAs.",
              },
            ),
          ),
        },
        { description: "The relay's TLS certificate." },
      ),
    ),
  },
  { description: "SmtpDomainStatus is the observed state of an SmtpDomain, written only by the operator." },
);
export type SmtpDomainStatus = Static<typeof SmtpDomainStatus>;

// ---------------------------------------------------------------------------
// SupportAddress

const OutboundSpec = Type.Object(
  {
    host: Type.String({
      description: "The customer's SMTP server that sends this address's mail, e.g. smtp.example.com.",
      minLength: 1,
      maxLength: 253,
      ...rules({
        rule: `self.matches('${dnsNameRegex}') || isIP(self)`,
        message: "host must be a lowercase DNS name such as smtp.example.com, or an IP address",
      }),
    }),
    port: Type.Optional(Port("Port of the customer's SMTP server: 587 for StartTLS, 465 for Implicit TLS.", 587)),
    tls: Type.Optional(
      Enum(["StartTLS", "Implicit"] as const, {
        description: "StartTLS (required, never opportunistic) or Implicit TLS. Plaintext is not offered.",
        default: "StartTLS",
      }),
    ),
    credentialsSecretRef: LocalSecretReference(
      "A Secret with `username` and `password` keys: this address's account on the customer's server.",
    ),
    caSecretRef: Type.Optional(
      SecretKeySelector("A Secret key with PEM CA certificates to verify the server with, instead of the system roots.", "ca.crt"),
    ),
  },
  {
    description:
      "Where and how the relay delivers this address's outbound mail: through the customer's own SMTP server, with this address's credentials, TLS required.",
    ...rules(
      {
        rule: "!has(self.port) || !has(self.tls) || !(self.port == 465 && self.tls == 'StartTLS')",
        message: "port 465 is implicit TLS (SMTPS): set tls: Implicit, or use port 587 with StartTLS",
      },
      {
        rule: "!has(self.port) || !has(self.tls) || !(self.port == 587 && self.tls == 'Implicit')",
        message: "port 587 is submission with StartTLS: set tls: StartTLS, or use port 465 with Implicit",
      },
    ),
  },
);

const VerificationSpec = Type.Object(
  {
    interval: Type.Optional(Duration("How often the operator verifies both directions again, e.g. 24h.", "24h")),
    timeout: Type.Optional(
      Duration("How long a verification email may take to come back before the attempt fails with VerificationTimedOut.", "10m"),
    ),
  },
  {
    description:
      "Verification: one email each way, each with a one-time token, must come back through the domain's inbound relay (authenticated, or in Forwarded mode forwarded to its port 25).",
    ...rules({
      rule: "!has(self.interval) || !has(self.timeout) || duration(self.timeout) < duration(self.interval)",
      message: "verification.timeout must be shorter than verification.interval",
    }),
  },
);

export const SupportAddressSpec = Type.Object(
  {
    address: Type.String({
      description: "The support address, e.g. support@example.com. Immutable.",
      minLength: 3,
      maxLength: mailboxMaxLength,
      ...rules(
        {
          // Double quotes: the local part may contain an apostrophe.
          rule: `self.matches("${mailboxRegex}")`,
          message:
            "address must be a plain mailbox such as support@example.com: no display name, quotes, comments, '%' or '!', source route or address literal, and a lowercase domain",
        },
        {
          rule: `self.matches("${cel(localPartLengthPattern)}")`,
          message: `the part of address before the @ must be at most ${localPartMaxLength} characters`,
        },
        immutable("address", "create a new SupportAddress for another address"),
      ),
    }),
    domainRef: Type.Object(
      { name: ObjectName("Name of the SmtpDomain in the same namespace.") },
      { description: "The SmtpDomain this address belongs to; the address must be in that domain." },
    ),
    displayName: Type.Optional(Type.String({ description: "Brand or display name the helpdesk shows for this address.", maxLength: 128 })),
    outbound: OutboundSpec,
    verification: Type.Optional(VerificationSpec),
  },
  { description: "SupportAddressSpec declares one support address in a connected domain." },
);
export type SupportAddressSpec = Static<typeof SupportAddressSpec>;

export const VerificationDirection = ["Inbound", "Outbound"] as const;
export const VerificationResult = ["Pending", "Succeeded", "Failed"] as const;

const VerificationAttempt = Type.Object(
  {
    direction: Enum(VerificationDirection, {
      description: "Inbound (customer's server to the relay) or Outbound (relay through the customer's server and back).",
    }),
    startedAt: Timestamp("When the verification email was sent."),
    completedAt: Type.Optional(Timestamp("When the token came back, or the attempt failed.")),
    result: Enum(VerificationResult, { description: "Pending, Succeeded or Failed." }),
    reason: Type.String({ description: "A stable CamelCase reason, documented in docs/api.md." }),
    message: Type.Optional(Type.String({ description: "What happened and what to fix." })),
    tokenSha256: Type.Optional(Type.String({ description: "SHA-256 of the attempt's one-time token; the token itself is never stored." })),
    basis: Type.Optional(
      Type.String({
        description:
          "What the attempt verified (spec generation, outbound credentials, inbound credential versions); when it changes, a new attempt starts.",
      }),
    ),
    previouslyVerifiedAt: Type.Optional(
      Timestamp(
        "Set on an attempt that repeats a proof still standing: the interval elapsed or one was requested with the basis unchanged, or only the domain's inbound credential versions changed and the version the earlier proof came back with is still Active (a rotation adding a version). When the previous attempt succeeded. The direction stays verified, and the address Ready, until this attempt fails.",
      ),
    ),
    credentialVersion: Type.Optional(
      Type.Integer({
        description:
          "The inbound credential version the token came back with (a succeeded attempt), or that the earlier proof came back with (an attempt with previouslyVerifiedAt). Revoking it is what makes the proof stale.",
        format: "int32",
      }),
    ),
  },
  { description: "One verification attempt." },
);

export const SupportAddressStatus = Type.Object(
  {
    observedGeneration: Type.Optional(
      Type.Integer({ description: "The .metadata.generation the status was computed from.", format: "int64" }),
    ),
    conditions: Type.Optional(
      Conditions("DomainReady, InboundVerified, OutboundVerified, Ready; Reconciling and Stalled only while True."),
    ),
    verifications: Type.Optional(
      Type.Array(VerificationAttempt, {
        description: "The latest verification attempt in each direction.",
        maxItems: 2,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["direction"],
      }),
    ),
    lastHandledVerifyRequest: Type.Optional(
      Type.String({ description: "The value of the smtpconnector.dev/verify-requested-at annotation the operator last acted on." }),
    ),
  },
  { description: "SupportAddressStatus is the observed state of a SupportAddress, written only by the operator." },
);
export type SupportAddressStatus = Static<typeof SupportAddressStatus>;

// ---------------------------------------------------------------------------
// The kinds

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string | Date;
  deletionTimestamp?: string | Date;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
}

export interface SmtpDomain {
  apiVersion: typeof apiVersion;
  kind: "SmtpDomain";
  metadata: ObjectMeta;
  spec: SmtpDomainSpec;
  status?: SmtpDomainStatus;
}

export interface SupportAddress {
  apiVersion: typeof apiVersion;
  kind: "SupportAddress";
  metadata: ObjectMeta;
  spec: SupportAddressSpec;
  status?: SupportAddressStatus;
}

export interface PrinterColumn {
  name: string;
  type: "string" | "integer" | "date";
  jsonPath: string;
  description: string;
  priority?: number;
}

const conditionColumn = (name: string, type: string, description: string): PrinterColumn => ({
  name,
  type: "string",
  jsonPath: `.status.conditions[?(@.type=="${type}")].status`,
  description,
});

export interface KindDefinition {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  description: string;
  spec: TSchema;
  status: TSchema;
  printerColumns: PrinterColumn[];
}

export const kinds: KindDefinition[] = [
  {
    kind: "SmtpDomain",
    plural: "smtpdomains",
    singular: "smtpdomain",
    shortNames: ["smtpdom"],
    description:
      "SmtpDomain connects a customer's mail domain to the helpdesk through an authenticated, TLS-encrypted relay. The operator issues inbound credentials into versioned Secrets, runs the relay, and reports status.",
    spec: SmtpDomainSpec,
    status: SmtpDomainStatus,
    printerColumns: [
      { name: "Domain", type: "string", jsonPath: ".spec.domain", description: "The customer's mail domain." },
      {
        name: "Active Versions",
        type: "string",
        jsonPath: ".status.activeVersions",
        description: "The inbound credential versions the relay accepts, e.g. 1,2 during a rotation.",
      },
      { name: "Addresses Served", type: "integer", jsonPath: ".status.addresses", description: "Support addresses served for the domain." },
      {
        name: "Not Served",
        type: "integer",
        jsonPath: ".status.addressesNotServed",
        description:
          "Support addresses of the domain that are not served (limits, conflicts, a wrong domain or Secret); their DomainReady says why.",
        priority: 1,
      },
      conditionColumn("Ready", "Ready", "Whether the domain is fully connected."),
      {
        name: "Endpoint",
        type: "string",
        jsonPath: ".status.relay.endpoint",
        description: "Where the customer's server connects.",
        priority: 1,
      },
      {
        name: "DKIM Pending",
        type: "string",
        jsonPath: ".status.dkim.pending",
        description: "DKIM selectors whose DNS record awaits publication.",
        priority: 1,
      },
      {
        name: "Cert Expiry",
        type: "string",
        jsonPath: ".status.tls.notAfter",
        description: "When the relay's certificate expires.",
        priority: 1,
      },
      // Last of the wide columns: the columns before it keep their places in scripts that read them.
      {
        name: "Mode",
        type: "string",
        jsonPath: ".spec.inbound.mode",
        description:
          "Inbound mode: Authenticated (the customer's server relays with AUTH) or Forwarded (its mail service forwards to port 25).",
        priority: 1,
      },
      { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp", description: "Age of the object." },
    ],
  },
  {
    kind: "SupportAddress",
    plural: "supportaddresses",
    singular: "supportaddress",
    shortNames: ["supaddr"],
    description:
      "SupportAddress connects one support address of a connected SmtpDomain: inbound mail reaches the helpdesk through the relay, outbound mail leaves through the customer's own SMTP server with this address's credentials.",
    spec: SupportAddressSpec,
    status: SupportAddressStatus,
    printerColumns: [
      { name: "Address", type: "string", jsonPath: ".spec.address", description: "The support address." },
      {
        name: "SmtpDomain",
        type: "string",
        jsonPath: ".spec.domainRef.name",
        description: "The SmtpDomain it belongs to (the object's name, not the mail domain).",
      },
      conditionColumn("Inbound Verified", "InboundVerified", "Inbound verification."),
      conditionColumn("Outbound Verified", "OutboundVerified", "Outbound verification."),
      conditionColumn("Ready", "Ready", "Whether the address is fully connected."),
      { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp", description: "Age of the object." },
    ],
  },
];
