#!/usr/bin/env bash
# Builds helm from the Go module proxy (there is no other way to get it here)
# and prints the path of the binary. Cached outside the repository by version,
# next to the control plane, so it is built once per machine.
set -euo pipefail
version=v3.22.0
cache=${SMTPC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/smtp-connector}/helm/$version
bin=$cache/helm
if [[ -x $bin ]]; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null || { echo "helm build: Go is required to build helm" >&2; exit 1; }
echo "helm build: building helm $version into $cache (a few minutes the first time)" >&2
started=$(date +%s)
mkdir -p "$cache"
CGO_ENABLED=0 GOBIN="$cache.partial" go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version" "helm.sh/helm/v3/cmd/helm@$version" >&2
mv "$cache.partial/helm" "$bin"
rmdir "$cache.partial"
echo "helm build: done in $(( $(date +%s) - started ))s" >&2
echo "$bin"
