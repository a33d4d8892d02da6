// The operator's permissions: the single source of the chart's ClusterRole
// (generated into charts/, checked for drift) and of the RBAC the tests run
// the operator under. Exact verbs; nothing it does not use. Every resource it
// touches is namespaced, so the namespace-scoped mode (--watch-namespaces)
// grants the same rules as a Role in each watched namespace and needs no
// ClusterRole at all (the CRDs are installed by whoever installs the chart).
export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  resourceNames?: string[];
  verbs: string[];
}

/** The leader-election Lease's default name (one per installation, in the operator's namespace; --lease-name). */
export const leaseName = "smtp-connector-operator";

export const operatorRules: PolicyRule[] = [
  // Its own API: read everything, write only status, and its finalizer on SmtpDomains (a patch).
  { apiGroups: ["smtpconnector.dev"], resources: ["smtpdomains", "supportaddresses"], verbs: ["get", "list", "watch"] },
  { apiGroups: ["smtpconnector.dev"], resources: ["smtpdomains"], verbs: ["patch"] },
  { apiGroups: ["smtpconnector.dev"], resources: ["smtpdomains/status", "supportaddresses/status"], verbs: ["get", "patch"] },
  // Secrets: issued credentials and relay config (server-side apply creates with patch and create), and the ones
  // a domain or address references (read only). Listed and watched as metadata only, and read by name when a
  // domain or address names one (its own included); RBAC cannot grant metadata without data, so list/watch is
  // granted on all of them.
  { apiGroups: [""], resources: ["secrets"], verbs: ["get", "list", "watch", "create", "patch"] },
  { apiGroups: [""], resources: ["services"], verbs: ["get", "list", "watch", "create", "patch"] },
  { apiGroups: ["apps"], resources: ["deployments"], verbs: ["get", "list", "watch", "create", "patch"] },
  // Watched (label-selected, our own only) so an edit or a deletion is repaired at once, not at the next resync.
  { apiGroups: ["networking.k8s.io"], resources: ["networkpolicies"], verbs: ["get", "list", "watch", "create", "patch"] },
  { apiGroups: ["policy"], resources: ["poddisruptionbudgets"], verbs: ["get", "list", "watch", "create", "patch"] },
  { apiGroups: ["", "events.k8s.io"], resources: ["events"], verbs: ["create", "patch"] },
  // Read only: where each relay pod serves its control API (receipts and last use are each pod's own).
  { apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"], verbs: ["list", "watch"] },
];

/**
 * The leader-election Lease lives in the operator's own namespace: a Role, not a ClusterRole, and only
 * that Lease by name (create cannot be limited by name: RBAC does not know the name of an object not yet made).
 */
export function leaseRulesFor(name: string): PolicyRule[] {
  return [
    { apiGroups: ["coordination.k8s.io"], resources: ["leases"], resourceNames: [name], verbs: ["get", "update"] },
    { apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["create"] },
  ];
}

export const leaseRules: PolicyRule[] = leaseRulesFor(leaseName);

/**
 * In the namespace-scoped mode, the installation's CA Secret in the operator's own namespace: read and watched
 * by name (a list or watch with fieldSelector metadata.name is authorized by resourceName), so a hand-edited CA
 * is noticed at once, and created once (in the cluster-wide mode the ClusterRole covers it).
 */
export function caRules(caSecretName: string): PolicyRule[] {
  return [
    // list and watch: noticing a hand-edited CA at once; patch: the CA's rotation, applied only onto the version read.
    { apiGroups: [""], resources: ["secrets"], resourceNames: [caSecretName], verbs: ["get", "list", "watch", "patch"] },
    { apiGroups: [""], resources: ["secrets"], verbs: ["create"] },
  ];
}
