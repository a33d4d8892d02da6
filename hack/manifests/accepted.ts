// Findings of the manifest checkers that stay, each with its reason. docs/security.md lists the same
// (a unit test keeps the two in step); `npm run check:manifests` fails on any finding not here, and on an
// entry here that no longer occurs (a fixed finding leaves no stale excuse behind).
export interface Accepted {
  tool: "kube-score" | "checkov";
  /** kube-score's check id or checkov's CKV_ id. */
  check: string;
  /** Which render: the chart's defaults, ci/production-values.yaml, or the operator's objects for SmtpDomains. */
  render: "defaults" | "production" | "operator";
  reason: string;
}

export const accepted: Accepted[] = [
  {
    tool: "kube-score",
    check: "container-image-pull-policy",
    render: "defaults",
    reason:
      "IfNotPresent: the image is referenced by an immutable version tag or a digest, so a cached image is the right one; production sets Always where pull secrets must be re-checked.",
  },
  { tool: "checkov", check: "CKV_K8S_15", render: "defaults", reason: "The same finding as kube-score's container-image-pull-policy." },
  {
    tool: "kube-score",
    check: "pod-networkpolicy",
    render: "defaults",
    reason:
      "networkPolicy.enabled is opt-in: the API server's address and port differ per cluster (and some CNIs enforce nothing). The production values enable it.",
  },
  {
    tool: "kube-score",
    check: "container-resources",
    render: "defaults",
    reason:
      "No CPU limit by default: a limit throttles the operator's bursts (a resync, a certificate round) for no protection a request does not give; production sets one.",
  },
  { tool: "checkov", check: "CKV_K8S_11", render: "defaults", reason: "The same finding as kube-score's container-resources (CPU limit)." },
  {
    tool: "kube-score",
    check: "container-ephemeral-storage-request-and-limit",
    render: "defaults",
    reason:
      "The root filesystem is read-only and no volume is writable; the only ephemeral storage is the container's log, which the kubelet rotates by its own limit (a pod limit below it would evict the operator).",
  },
  { tool: "kube-score", check: "container-ephemeral-storage-request-and-limit", render: "production", reason: "As for the defaults." },
  {
    tool: "kube-score",
    check: "deployment-replicas",
    render: "defaults",
    reason: "One replica by default (a standby only helps with leader election on, replicaCount 2, as the production values do).",
  },
  {
    tool: "kube-score",
    check: "deployment-has-host-podantiaffinity",
    render: "production",
    reason:
      "The production values spread replicas with topologySpreadConstraints (kubernetes.io/hostname, DoNotSchedule), which kube-score does not read; a podAntiAffinity would say the same twice.",
  },
  {
    tool: "checkov",
    check: "CKV2_K8S_6",
    render: "defaults",
    reason: "The same finding as kube-score's pod-networkpolicy: networkPolicy.enabled is opt-in.",
  },
  {
    tool: "checkov",
    check: "CKV_K8S_43",
    render: "defaults",
    reason: "The chart cannot know the digest of an image built after it; image.digest pins it (the production values do).",
  },
  {
    tool: "checkov",
    check: "CKV_K8S_38",
    render: "defaults",
    reason: "The operator is a Kubernetes client: it needs its ServiceAccount token (the relays it runs do not mount one).",
  },
  { tool: "checkov", check: "CKV_K8S_38", render: "production", reason: "As for the defaults." },
  {
    tool: "kube-score",
    check: "container-image-pull-policy",
    render: "operator",
    reason:
      "The relay image is the operator's --relay-image, a version tag or (the chart's image.digest) a digest: a cached image is the right one.",
  },
  {
    tool: "kube-score",
    check: "container-resources",
    render: "operator",
    reason:
      "The relay's default resources have no CPU limit (a limit throttles TLS handshakes and DKIM signing in a burst); spec.relay.resources sets one.",
  },
  {
    tool: "checkov",
    check: "CKV_K8S_11",
    render: "operator",
    reason: "The same finding as kube-score's container-resources (CPU limit) for the relay.",
  },
  {
    tool: "kube-score",
    check: "container-ephemeral-storage-request-and-limit",
    render: "operator",
    reason:
      "The relay's root filesystem is read-only; its only writable storage is /tmp, an emptyDir with a sizeLimit (the DKIM spool budget the relay enforces below it, plus 16 MiB), and its log, which the kubelet rotates.",
  },
  {
    tool: "kube-score",
    check: "pod-networkpolicy",
    render: "operator",
    reason:
      "The relay's NetworkPolicy restricts ingress only: it delivers to the helpdesk's ingestion and to each customer's own mail server by host name (any address, resolved when it delivers), which no egress rule by address can follow. A platform team may add its own egress policy.",
  },
  {
    tool: "kube-score",
    check: "deployment-has-host-podantiaffinity",
    render: "operator",
    reason:
      "The relay's replicas spread over nodes and zones by topologySpreadConstraints (maxSkew 1, ScheduleAnyway), which kube-score does not read; spec.relay.template.pod.affinity may add an anti-affinity.",
  },
  {
    tool: "kube-score",
    check: "deployment-replicas",
    render: "operator",
    reason: "spec.relay.replicas: 1 is the domain's choice (the default is 2, with a PodDisruptionBudget).",
  },
  {
    tool: "kube-score",
    check: "service-type",
    render: "operator",
    reason:
      "A NodePort Service only where the domain asks for one (spec.relay.service.type, e.g. behind a balancer of its own); the default is LoadBalancer.",
  },
];
