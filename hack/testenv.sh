#!/usr/bin/env bash
# `npm run testenv -- <command> ...`: the local control plane binary, built and
# cached on first use (hack/testenv/build.sh). exec, so signals reach it directly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/setup.sh
binary=$(bash hack/testenv/build.sh)
exec "$binary" "$@"
