#!/usr/bin/env bash
# What a node needs, installed or built once and cached: Debian's containerd,
# runc, CNI plugins, catatonit, iptables and ipset; the kubelet and
# kube-scheduler (build.sh); kube-router for NetworkPolicy (kube-router.sh); the control plane (hack/testenv/build.sh); the
# project's image (hack/image/build.sh); and a pause image made of Debian's
# static catatonit (`catatonit -P` is its pause mode), since no registry serves
# registry.k8s.io/pause here. Prints one JSON line for hack/node/node.ts.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
# shellcheck source=../lib/debian-packages.sh
source hack/lib/debian-packages.sh
# shellcheck source=../lib/cache.sh
source hack/lib/cache.sh
ensure_debian_packages node containerd runc containernetworking-plugins catatonit iptables ipset iproute2 util-linux buildah
node_binary=$(bash hack/node/build.sh)
kube_router=$(bash hack/node/kube-router.sh)
testenv_binary=$(bash hack/testenv/build.sh)
image_json=$(bash hack/image/build.sh)

pause_version=$(dpkg-query -W -f='${Version}' catatonit)
pause=$(cache_root)/image/pause-$pause_version.tar
if [[ ! -f $pause ]]; then
  cache_lock "$pause"
  if [[ ! -f $pause ]]; then
    export CONTAINERS_CONF=$root/hack/image/containers.conf CONTAINERS_STORAGE_CONF=$(cache_root)/image/storage.conf
    container=$(buildah from scratch)
    buildah copy --quiet "$container" /usr/bin/catatonit /pause
    buildah config --entrypoint '["/pause", "-P"]' --user 65535:65535 "$container"
    buildah commit --quiet --rm "$container" registry.k8s.io/pause:3.10 >/dev/null
    rm -f "$pause.partial.$$"
    buildah push --quiet registry.k8s.io/pause:3.10 "docker-archive:$pause.partial.$$:registry.k8s.io/pause:3.10" >/dev/null
    mv "$pause.partial.$$" "$pause"
  fi
fi
printf '{"nodeBinary":"%s","kubeRouter":"%s","testenvBinary":"%s","pauseArchive":"%s","image":%s}\n' "$node_binary" "$kube_router" "$testenv_binary" "$pause" "$image_json"
