#!/usr/bin/env bash
# Builds helm from the Go module proxy (there is no other way to get it here)
# and prints the path of the binary. Cached outside the repository by version,
# next to the control plane, so it is built once per machine.
set -euo pipefail
version=v3.22.0
# The Kubernetes version helm assumes where it sees no cluster (helm template, lint): helm's own release
# build sets it to its client-go's minor (v0.37 for v3.22.0); a plain go install leaves helm's fallback,
# 1.20, and the chart's kubeVersion (>=1.31) refuses that. Part of the cache key.
k8s_minor=37
# shellcheck source=../lib/cache.sh
source "$(dirname "$0")/../lib/cache.sh"
cache=$(cache_root)/helm/$version-k8s1.$k8s_minor
bin=$cache/helm
cache_reuse "$cache" "$bin"
command -v go >/dev/null || { echo "helm build: Go is required to build helm" >&2; exit 1; }
echo "helm build: building helm $version into $cache (a few minutes the first time)" >&2
started=$(date +%s)
cache_partial "$cache"
trap 'rm -rf "$partial"' EXIT
CGO_ENABLED=0 GOBIN="$partial" go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor" "helm.sh/helm/v3/cmd/helm@$version" >&2
cache_commit "$cache"
echo "helm build: done in $(( $(date +%s) - started ))s" >&2
echo "$bin"
