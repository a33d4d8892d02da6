#!/usr/bin/env bash
# Builds kube-router from the Go module proxy, for its NetworkPolicy controller
# only, and prints the path of the binary. Cached by version (one build per
# entry at a time: hack/lib/cache.sh). v2.1.0 is the newest version the Go
# module proxy serves here (2.2 and later answer 403).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=v2.1.0
# shellcheck source=../lib/cache.sh
source "$here/../lib/cache.sh"
cache=$(cache_root)/kube-router/$version
bin=$cache/kube-router
cache_reuse "$cache" "$bin"
command -v go >/dev/null || { echo "kube-router build: Go is required (https://go.dev/dl)" >&2; exit 1; }
echo "kube-router build: building kube-router $version into $cache (about 4-5 minutes the first time on 2 cores)" >&2
started=$(date +%s)
cache_partial "$cache"
trap 'rm -rf "$partial"' EXIT
CGO_ENABLED=0 GOBIN="$partial" go install -trimpath -ldflags "-s -w" "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$version" >&2
cache_commit "$cache"
echo "kube-router build: done in $(( $(date +%s) - started ))s" >&2
echo "$bin"
