#!/usr/bin/env bash
# Cuts the artifacts of one release from this tree, all from the version
# package.json names (docs/releasing.md): the packaged chart, the CRD bundle,
# the kubectl plugin as one file, and the image (built when a container engine
# is on PATH, else the exact command is printed), with SHA256SUMS.
# Usage: hack/release.sh [OUT_DIR]   (default dist/release/VERSION)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/node.sh
source hack/lib/node.sh
# Refuses when package.json, package-lock.json, Chart.yaml, the chart's image tag and CHANGELOG.md disagree.
version=$(node --import tsx hack/release-versions.ts)
out=${1:-dist/release/$version}
repository=$(node --import tsx -e 'import { parse } from "yaml"; import { readFileSync } from "node:fs"; console.log(parse(readFileSync("charts/smtp-connector/values.yaml", "utf8")).image.repository)')
if [[ -n $(git status --porcelain --untracked-files=no) ]]; then
  echo "release: the work tree has uncommitted changes; a release is built from a commit" >&2
  [[ ${SMTPC_RELEASE_ALLOW_DIRTY:-} == 1 ]] || exit 1
fi
echo "release $version into $out"
rm -rf "$out"
mkdir -p "$out"

# Generated files (CRDs, the chart's RBAC and CRD templates, docs) must match their sources.
node --import tsx --test --test-reporter=dot test/unit/generated.test.ts test/unit/release.test.ts >/dev/null
npx tsc -p tsconfig.build.json

helm=$(bash hack/helm/build.sh)
"$helm" lint --strict charts/smtp-connector >/dev/null
"$helm" package charts/smtp-connector --destination "$out" >/dev/null

# The CRD bundle: for installs that manage CRDs outside Helm (crds.install=false) and GitOps.
for crd in crds/*.yaml; do
  echo "---"
  cat "$crd"
done >"$out/smtp-connector-crds-$version.yaml"

# The plugin: dist/plugin/main.js imports only Node's built-ins, so it is one file (Node 24 runs it).
bash hack/plugin-file.sh "$out/kubectl-smtpconnector" "$version"

image="$repository:$version"
engine=$(command -v docker || command -v podman || true)
# A client without a daemon (docker here) cannot build: say so and print the command.
if [[ -n $engine ]] && "$engine" info >/dev/null 2>&1; then
  "$engine" build --tag "$image" --label "org.opencontainers.image.version=$version" .
  echo "image: built $image (push it, then record its digest in the release notes)"
else
  echo "image: no running container engine here; build and push it from this commit with:"
  echo "  docker build --tag $image --label org.opencontainers.image.version=$version . && docker push $image"
fi

(cd "$out" && sha256sum -- * >SHA256SUMS)
ls -l "$out"
