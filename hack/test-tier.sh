#!/usr/bin/env bash
# Runs one test tier with node's test runner: unit | apiserver | e2e.
# Node 20's --test takes no glob, so the files are listed here.
set -euo pipefail
cd "$(dirname "$0")/.."
tier=${1:?usage: test-tier.sh unit|apiserver|e2e}
mapfile -t files < <(find "test/$tier" -name '*.test.ts' | sort)
if [[ ${#files[@]} -eq 0 ]]; then
  echo "no tests in test/$tier" >&2
  exit 1
fi
# The e2e tier runs the relay from its Deployment's command, which names dist/;
# the faults tier's soak runs the compiled relay too (as the image does).
if [[ $tier == e2e || $tier == faults ]]; then npx tsc -p tsconfig.build.json; fi
concurrency=1
[[ $tier == unit ]] && concurrency=2
exec node --import tsx --test --test-concurrency="$concurrency" --test-reporter=spec "${files[@]}"
