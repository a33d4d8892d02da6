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
built() { [[ -x $bin ]] && touch "$cache" && echo "$bin"; }
built && exit 0
cache_lock "$cache"
built && exit 0
command -v go >/dev/null || { echo "gitops-check build: Go is required" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/main.go" "$here/go.mod" "$work/"
cd "$work"
echo "gitops-check build: building into $cache" >&2
export CGO_ENABLED=0 GOFLAGS=-mod=mod
go mod tidy >&2
partial=$(mktemp -d "$cache.tmp.XXXXXX")
chmod 755 "$partial"
trap 'rm -rf "$work" "$partial"' EXIT
go build -trimpath -ldflags "-s -w" -o "$partial/gitops-check" . >&2
rm -rf "$cache"
mv -T "$partial" "$cache"
cache_prune "$(dirname "$cache")" "$cache"
echo "$bin"
