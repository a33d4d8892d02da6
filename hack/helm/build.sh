#!/usr/bin/env bash
# Builds helm from the Go module proxy (there is no other way to get it here)
# and prints the path of the binary. Cached outside the repository by version,
# next to the control plane, so it is built once per machine.
set -euo pipefail
version=v3.22.0
# shellcheck source=../lib/cache.sh
source "$(dirname "$0")/../lib/cache.sh"
cache=$(cache_root)/helm/$version
bin=$cache/helm
[[ -x $bin ]] && { echo "$bin"; exit 0; }
cache_lock "$cache"
[[ -x $bin ]] && { echo "$bin"; exit 0; }
command -v go >/dev/null || { echo "helm build: Go is required to build helm" >&2; exit 1; }
echo "helm build: building helm $version into $cache (a few minutes the first time)" >&2
started=$(date +%s)
partial=$(mktemp -d "$cache.tmp.XXXXXX")
chmod 755 "$partial"
trap 'rm -rf "$partial"' EXIT
CGO_ENABLED=0 GOBIN="$partial" go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version" "helm.sh/helm/v3/cmd/helm@$version" >&2
rm -rf "$cache"
mv -T "$partial" "$cache"
echo "helm build: done in $(( $(date +%s) - started ))s" >&2
echo "$bin"
