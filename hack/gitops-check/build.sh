#!/usr/bin/env bash
# Builds hack/gitops-check (kstatus and gopher-lua, the GitOps tools' own code)
# from the Go module proxy; cached by a hash of its sources. Prints the binary's path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
hash=$(cat "$here/main.go" "$here/go.mod" "$here/build.sh" | sha256sum | cut -c1-12)
cache=${SMTPC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/smtp-connector}/gitops-check/$hash
bin=$cache/gitops-check
if [[ -x $bin ]]; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null || { echo "gitops-check build: Go is required" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/main.go" "$here/go.mod" "$work/"
cd "$work"
echo "gitops-check build: building into $cache" >&2
export CGO_ENABLED=0 GOFLAGS=-mod=mod
go mod tidy >&2
mkdir -p "$cache"
go build -trimpath -ldflags "-s -w" -o "$bin.partial" . >&2
mv "$bin.partial" "$bin"
echo "$bin"
