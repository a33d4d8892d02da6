#!/usr/bin/env bash
# Exim, for the mail tier's test of the Exim snippet. Exim and Postfix are both
# Debian's mail-transport-agent, so Exim cannot be installed beside Postfix:
# its package is unpacked into a cache instead (its one extra library, libidn12,
# is installed by hack/setup.sh), and its compiled-in user is created. Prints
# the path of the exim4 binary.
set -euo pipefail
# shellcheck source=../lib/cache.sh
source "$(dirname "$0")/../lib/cache.sh"
cache=$(cache_root)/exim
bin=$cache/pkg/usr/sbin/exim4
[[ -x $bin ]] || cache_lock "$cache"
if [[ ! -x $bin ]]; then
  [[ $(id -u) -eq 0 ]] || { echo "exim fetch: run as root (apt-get download, useradd)" >&2; exit 1; }
  work=$(mktemp -d)
  cache_partial "$cache"
  trap 'rm -rf "$work" "$partial"' EXIT
  cd "$work"
  packages=(exim4-daemon-light)
  apt-get download "${packages[@]}" >/dev/null 2>&1 || { apt-get update -qq >&2 && apt-get download "${packages[@]}" >&2; }
  for deb in ./*.deb; do dpkg -x "$deb" "$partial/pkg"; done
  cache_commit "$cache"
fi
# The user Exim is compiled to run as; it refuses to start without it.
id Debian-exim >/dev/null 2>&1 || useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin Debian-exim
echo "$bin"
