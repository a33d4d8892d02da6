#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh machine, and nothing
# twice: npm packages (when package-lock.json changed), the local control plane
# build (cached by version, see hack/testenv/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "setup: $*" >&2; }

# Node: the version pinned in .node-version, installed into the cache on first use.
# shellcheck source=lib/node.sh
source hack/lib/node.sh
command -v go >/dev/null || { echo "setup: Go 1.26 or newer is required to build the local control plane" >&2; exit 1; }

# Debian packages for the mail tier: Postfix (the customer's server, and its
# smtp-sink as next hop), Cyrus SASL (Postfix's AUTH), swaks and the Perl TLS
# and SASL modules it needs, openssl (test certificates), libidn12 for the
# unpacked Exim (hack/exim/fetch.sh) and unshare (util-linux) to give it an
# /etc/hosts of its own. tinyproxy: the HTTP proxy in front of the API server
# for the kubeconfig proxy-url tests (test/apiserver/kubeconfig-proxy.test.ts).
packages=(postfix sasl2-bin libsasl2-modules python3-dkim swaks libio-socket-ssl-perl libnet-ssleay-perl libauthen-sasl-perl openssl ca-certificates libidn12 util-linux faketime tinyproxy)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  log "installing Debian packages: ${missing[*]}"
  [[ $(id -u) -eq 0 ]] || { echo "setup: run as root, or install: apt-get install ${missing[*]}" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  # "No configuration": the tests run private Postfix instances of their own.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# npm packages: reinstall only when the lock file changed since the last install.
stamp=node_modules/.smtpc-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  log "installing npm packages"
  npm ci --no-audit --no-fund >&2
  echo "$want" >"$stamp"
fi

# The control plane binary: built once per version and source hash.
bash hack/testenv/build.sh >/dev/null

# Exim, unpacked beside Postfix (both are the system MTA, so not installed).
bash hack/exim/fetch.sh >/dev/null

# helm, for the chart's tests: built once per version from the Go module proxy.
bash hack/helm/build.sh >/dev/null

# gitops-check (kstatus and Argo CD's Lua VM), for the GitOps health tests.
bash hack/gitops-check/build.sh >/dev/null
