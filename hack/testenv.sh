#!/usr/bin/env bash
# `npm run testenv -- <command> ...`: the local control plane binary, built and
# cached on first use (hack/testenv/build.sh). exec, so signals reach it directly.
# `up --node`: the control plane with a real node beside it (hack/node/up.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/setup.sh
if [[ ${1:-} == up ]] && [[ " $* " == *" --node "* ]]; then
  shift
  exec bash hack/node.sh --import tsx hack/node/up.ts "$@"
fi
binary=$(bash hack/testenv/build.sh)
exec "$binary" "$@"
