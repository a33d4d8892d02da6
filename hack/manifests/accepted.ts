// Findings of the manifest checkers that stay, each with its reason. docs/security.md lists the same
// (a unit test keeps the two in step); `npm run check:manifests` fails on any finding not here, and on an
// entry here that no longer occurs (a fixed finding leaves no stale excuse behind).
export interface Accepted {
  tool: "kube-score" | "checkov";
  /** kube-score's check id or checkov's CKV_ id. */
  check: string;
  /** Which render: the chart's defaults or ci/production-values.yaml. */
  render: "defaults" | "production";
  reason: string;
}

export const accepted: Accepted[] = [
  { tool: "kube-score", check: "container-image-pull-policy", render: "defaults", reason: "IfNotPresent: the image is referenced by an immutable version tag or a digest, so a cached image is the right one; production sets Always where pull secrets must be re-checked." },
  { tool: "checkov", check: "CKV_K8S_15", render: "defaults", reason: "The same finding as kube-score's container-image-pull-policy." },
  { tool: "kube-score", check: "pod-networkpolicy", render: "defaults", reason: "networkPolicy.enabled is opt-in: the API server's address and port differ per cluster (and some CNIs enforce nothing). The production values enable it." },
  { tool: "kube-score", check: "container-resources", render: "defaults", reason: "No CPU limit by default: a limit throttles the operator's bursts (a resync, a certificate round) for no protection a request does not give; production sets one." },
  { tool: "checkov", check: "CKV_K8S_11", render: "defaults", reason: "The same finding as kube-score's container-resources (CPU limit)." },
  { tool: "kube-score", check: "container-ephemeral-storage-request-and-limit", render: "defaults", reason: "The root filesystem is read-only and no volume is writable; the only ephemeral storage is the container's log, which the kubelet rotates by its own limit (a pod limit below it would evict the operator)." },
  { tool: "kube-score", check: "container-ephemeral-storage-request-and-limit", render: "production", reason: "As for the defaults." },
  { tool: "kube-score", check: "deployment-replicas", render: "defaults", reason: "One replica by default (a standby only helps with leader election on, replicaCount 2, as the production values do)." },
  { tool: "kube-score", check: "deployment-has-host-podantiaffinity", render: "production", reason: "The production values spread replicas with topologySpreadConstraints (kubernetes.io/hostname, DoNotSchedule), which kube-score does not read; a podAntiAffinity would say the same twice." },
  { tool: "checkov", check: "CKV2_K8S_6", render: "defaults", reason: "The same finding as kube-score's pod-networkpolicy: networkPolicy.enabled is opt-in." },
  { tool: "checkov", check: "CKV_K8S_43", render: "defaults", reason: "The chart cannot know the digest of an image built after it; image.digest pins it (the production values do)." },
  { tool: "checkov", check: "CKV_K8S_38", render: "defaults", reason: "The operator is a Kubernetes client: it needs its ServiceAccount token (the relays it runs do not mount one)." },
  { tool: "checkov", check: "CKV_K8S_38", render: "production", reason: "As for the defaults." },
];
