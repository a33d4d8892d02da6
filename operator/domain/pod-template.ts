// The relay pods' template: the SmtpDomain's spec.relay.template.pod over the
// installation's defaults (--relay-pod-template) over the operator's own. Pure.
//
// Precedence, field by field (docs/operations.md, "Relay pods"):
// - labels and annotations: merged key by key, the domain's value winning over
//   the installation's; the operator's own labels (the Deployment's selector and
//   ownership) are set last and can never be overridden;
// - every other field: the domain's, if it sets it, replaces the installation's
//   as a whole, which replaces the built-in default as a whole. An empty list is
//   a value: `topologySpreadConstraints: []` turns the default spread off;
// - a topology spread constraint without a labelSelector counts this domain's
//   relay pods (the only useful choice, and one an installation-wide default
//   cannot name);
// - securityContext holds only ids: the restricted profile is set around them.
import { Value } from "@sinclair/typebox/value";
import { parse } from "yaml";
import { RelayPodTemplate, reservedPodLabels } from "../../crds/schema.js";

type Constraint = NonNullable<RelayPodTemplate["topologySpreadConstraints"]>[number];

/** What the pod template contributes to the relay Deployment's pod. */
export interface RelayPodParts {
  labels: Record<string, string>;
  annotations?: Record<string, string>;
  spec: Record<string, unknown>;
}

/**
 * The built-in spread: one pod more per node, and per zone, than elsewhere, as a preference. ScheduleAnyway,
 * because a hard rule would leave a second replica pending on a one-node cluster or under a tainted node.
 */
export const defaultSpread = (selector: Record<string, string>): Constraint[] =>
  ["kubernetes.io/hostname", "topology.kubernetes.io/zone"].map((topologyKey) => ({
    maxSkew: 1,
    topologyKey,
    whenUnsatisfiable: "ScheduleAnyway" as const,
    labelSelector: { matchLabels: { ...selector } },
  }));

const restricted = { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, seccompProfile: { type: "RuntimeDefault" } };

export function relayPodParts(
  domain: RelayPodTemplate | undefined,
  installation: RelayPodTemplate | undefined,
  own: { labels: Record<string, string>; selector: Record<string, string> },
): RelayPodParts {
  const pick = <K extends keyof RelayPodTemplate>(key: K): RelayPodTemplate[K] =>
    domain?.[key] !== undefined ? domain[key] : installation?.[key];
  const annotations = { ...installation?.metadata?.annotations, ...domain?.metadata?.annotations };
  const spread = (pick("topologySpreadConstraints") ?? defaultSpread(own.selector)).map((c) =>
    c.labelSelector ? c : { ...c, labelSelector: { matchLabels: { ...own.selector } } },
  );
  const ids = pick("securityContext");
  const spec: Record<string, unknown> = {
    securityContext: { ...restricted, ...ids, runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } },
    topologySpreadConstraints: spread,
  };
  for (const key of ["imagePullSecrets", "nodeSelector", "tolerations", "affinity", "priorityClassName"] as const) {
    const value = pick(key);
    if (value !== undefined) spec[key] = value;
  }
  // An empty list says "none"; the API server drops it, so it is not sent (a resync would see a difference).
  for (const key of ["topologySpreadConstraints", "imagePullSecrets", "tolerations"] as const) {
    if (Array.isArray(spec[key]) && (spec[key] as unknown[]).length === 0) delete spec[key];
  }
  return {
    labels: { ...installation?.metadata?.labels, ...domain?.metadata?.labels, ...own.labels, ...own.selector },
    ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
    spec,
  };
}

/** Parses and checks the installation's default (the --relay-pod-template flag: JSON or YAML); throws naming the field. */
export function parseRelayPodTemplate(text: string, source = "--relay-pod-template"): RelayPodTemplate | undefined {
  if (text.trim() === "") return undefined;
  let raw: unknown;
  try {
    raw = parse(text, { maxAliasCount: 0 });
  } catch (error) {
    throw new Error(`${source} must be a JSON or YAML object: ${(error as Error).message}`);
  }
  if (raw === null || raw === undefined) return undefined;
  const problems = [...Value.Errors(RelayPodTemplate, raw)].map((e) => `${e.path || "/"}: ${e.message}`);
  if (problems.length === 0)
    problems.push(...unknownFields(raw, Value.Clean(RelayPodTemplate, structuredClone(raw))).map((path) => `${path}: unknown field`));
  const template = raw as RelayPodTemplate;
  for (const key of reservedPodLabels) {
    if (template.metadata?.labels?.[key] !== undefined)
      problems.push(`/metadata/labels/${key}: the operator's own pod label cannot be set`);
  }
  for (const [i, t] of (template.tolerations ?? []).entries()) {
    if (t.operator === "Exists" && t.value) problems.push(`/tolerations/${i}/value: a toleration with operator Exists takes no value`);
    if (!t.key && t.operator !== "Exists") problems.push(`/tolerations/${i}: a toleration without a key must have operator Exists`);
  }
  if (problems.length > 0)
    throw new Error(
      `${source} is not a valid relay pod template (the shape of SmtpDomain spec.relay.template.pod): ${problems.slice(0, 10).join("; ")}`,
    );
  return template;
}

function unknownFields(raw: unknown, cleaned: unknown, path = ""): string[] {
  if (Array.isArray(raw) && Array.isArray(cleaned)) return raw.flatMap((item, i) => unknownFields(item, cleaned[i], `${path}/${i}`));
  if (!raw || typeof raw !== "object" || !cleaned || typeof cleaned !== "object") return [];
  const kept = cleaned as Record<string, unknown>;
  return Object.entries(raw as Record<string, unknown>).flatMap(([key, value]) =>
    key in kept ? unknownFields(value, kept[key], `${path}/${key}`) : [`${path}/${key}`],
  );
}
