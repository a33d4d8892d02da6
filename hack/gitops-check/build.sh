#!/usr/bin/env bash
# Builds hack/gitops-check (kstatus and gopher-lua, the GitOps tools' own code)
# from the Go module proxy; cached by a hash of its sources. Prints the binary's path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
hash=$(cat "$here/main.go" "$here/go.mod" "$here/build.sh" | sha256sum | cut -c1-12)
# shellcheck source=../lib/cache.sh
source "$here/../lib/cache.sh"
cache=$(cache_root)/gitops-check/$hash
bin=$cache/gitops-check
cache_reuse "$cache" "$bin"
command -v go >/dev/null || { echo "gitops-check build: Go is required" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/main.go" "$here/go.mod" "$work/"
cd "$work"
echo "gitops-check build: building into $cache" >&2
export CGO_ENABLED=0 GOFLAGS=-mod=mod
go mod tidy >&2
cache_partial "$cache"
trap 'rm -rf "$work" "$partial"' EXIT
go build -trimpath -ldflags "-s -w" -o "$partial/gitops-check" . >&2
cache_commit "$cache"
cache_prune "$(dirname "$cache")" "$cache"
echo "$bin"
