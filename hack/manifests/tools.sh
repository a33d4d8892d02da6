#!/usr/bin/env bash
# Builds the independent manifest checkers (cached outside the repository by
# version, each under hack/lib/cache.sh's lock) and prints their paths, one
# "name=path" a line: kubeconform and kube-score from the Go module proxy,
# checkov from PyPI in a venv of its own, and kubeconform schemas for the
# Prometheus Operator's kinds from its CRDs (the Go module's
# example/prometheus-operator-crd/, converted by crd-schemas.ts).
set -euo pipefail
# shellcheck source=../lib/cache.sh
source "$(dirname "$0")/../lib/cache.sh"
here=$(cd "$(dirname "$0")" && pwd)
kubeconform_version=v0.8.0
kube_score_version=v1.20.0
checkov_version=3.3.30
prometheus_operator_version=v0.85.0

# go_tool NAME MODULE/PATH VERSION: the binary, built once.
go_tool() {
  local name=$1 package=$2 version=$3
  local cache
  cache=$(cache_root)/$name/$version
  if [[ ! -x $cache/$name ]]; then
    cache_lock "$cache"
    if [[ ! -x $cache/$name ]]; then
      command -v go >/dev/null || { echo "$name: Go is required to build it" >&2; exit 1; }
      echo "$name: building $version into $cache" >&2
      local partial
      cache_partial "$cache"
      CGO_ENABLED=0 GOBIN="$partial" go install -trimpath -ldflags "-s -w" "$package@$version" >&2 || { rm -rf "$partial"; exit 1; }
      cache_commit "$cache"
    fi
  fi
  touch "$cache"
  echo "$name=$cache/$name"
}

checkov_tool() {
  local cache
  cache=$(cache_root)/checkov/$checkov_version
  # .installed is written last: a venv whose pip install was cut short has none.
  if [[ ! -e $cache/.installed ]]; then
    cache_lock "$cache"
    if [[ ! -e $cache/.installed ]]; then
      echo "checkov: installing $checkov_version into a venv at $cache (a few minutes the first time)" >&2
      # A venv's scripts name its absolute path, so it is built in place.
      rm -rf "$cache"
      python3 -m venv "$cache" >&2
      "$cache/bin/pip" install --quiet --disable-pip-version-check "checkov==$checkov_version" >&2 || { rm -rf "$cache"; exit 1; }
      touch "$cache/.installed"
    fi
  fi
  touch "$cache"
  echo "checkov=$cache/bin/checkov"
}

# The schemas of the kinds the chart's monitoring objects use, keyed by the
# CRDs' version and the converter's own digest (a changed converter converts again).
prometheus_schemas() {
  local converter cache
  converter=$(cat "$here/crd-schemas.ts" "$here/json-schema.ts" | sha256sum | cut -c1-12)
  cache=$(cache_root)/prometheus-operator-schemas/$prometheus_operator_version-$converter
  if [[ ! -e $cache/.converted ]]; then
    cache_lock "$cache"
    if [[ ! -e $cache/.converted ]]; then
      command -v go >/dev/null || { echo "prometheus-schemas: Go is required to download the CRDs" >&2; exit 1; }
      echo "prometheus-schemas: converting the CRDs of prometheus-operator $prometheus_operator_version into $cache" >&2
      local module dir partial
      module=$(cd "$(mktemp -d)" && go mod download -json "github.com/prometheus-operator/prometheus-operator@$prometheus_operator_version")
      dir=$(printf '%s' "$module" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
      cache_partial "$cache"
      (cd "$here/../.." && bash hack/node.sh --import tsx "$here/crd-schemas.ts" "$partial" \
        "$dir"/example/prometheus-operator-crd/monitoring.coreos.com_{servicemonitors,podmonitors,prometheusrules}.yaml) >&2 || { rm -rf "$partial"; exit 1; }
      touch "$partial/.converted"
      cache_commit "$cache"
      cache_prune "$(dirname "$cache")" "$cache"
    fi
  fi
  touch "$cache"
  echo "prometheus-schemas=$cache"
}

for tool in "${@:-kubeconform kube-score checkov prometheus-schemas}"; do
  for t in $tool; do
    case $t in
      kubeconform) go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$kubeconform_version" ;;
      kube-score) go_tool kube-score github.com/zegl/kube-score/cmd/kube-score "$kube_score_version" ;;
      checkov) checkov_tool ;;
      prometheus-schemas) prometheus_schemas ;;
      *) echo "unknown tool $t" >&2; exit 2 ;;
    esac
  done
done
