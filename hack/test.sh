#!/usr/bin/env bash
# The test command (`npm test`): sets up a fresh machine, then runs every tier.
#   static      typecheck, type-aware lint, formatting (prettier --check), and the chart and examples through kubeconform, kube-score and
#               checkov (`npm run check:manifests`: every finding explained, none stale)
#   setup       the build scripts themselves: two at once on one machine
#   unit        pure rules, no processes
#   apiserver   one real control plane (etcd + kube-apiserver + controller manager)
#   mail        the relay against real mail peers (swaks, Postfix, smtp-sink)
#   faults      nothing lost under faults: the relay killed and the next hop flapping under Postfix's load
#   e2e         the product against the control plane and real mail peers
#   node        the chart, the image built in the run and the relays as real pods on a real node
#               (kubelet, containerd, kube-proxy, kube-router), with a control plane of its own
# Set SMTPC_TIERS (e.g. "unit apiserver") to run fewer.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/node.sh
source hack/lib/node.sh

bash hack/setup.sh
tiers=${SMTPC_TIERS:-static setup unit mail faults apiserver e2e node}
started=$(date +%s)

with_plane=()
for tier in $tiers; do
  case $tier in
    static)
      echo "== static: tsc --noEmit, eslint + prettier --check, check:manifests"
      npx tsc -p tsconfig.json --noEmit
      npm run -s lint
      node --import tsx hack/manifests/check.ts
      ;;
    setup | unit | node) echo "== $tier"; bash hack/test-tier.sh "$tier" ;;
    mail) echo "== mail"; bash hack/test-tier.sh mail ;;
    faults) echo "== faults"; bash hack/test-tier.sh faults ;;
    apiserver | e2e) [[ -d test/$tier ]] && with_plane+=("$tier") ;;
    *) echo "unknown tier '$tier'" >&2; exit 2 ;;
  esac
done

# The tiers that need Kubernetes share one control plane for the whole run.
if [[ ${#with_plane[@]} -gt 0 ]]; then
  echo "== ${with_plane[*]} (one control plane)"
  node --import tsx hack/with-controlplane.ts bash -c '
    set -e
    for tier in "$@"; do echo "== $tier"; bash hack/test-tier.sh "$tier"; done
  ' tiers "${with_plane[@]}"
fi
echo "== all tiers passed in $(( $(date +%s) - started ))s"
