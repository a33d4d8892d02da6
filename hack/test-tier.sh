#!/usr/bin/env bash
# Runs one test tier with node's test runner: setup | unit | mail | faults | apiserver | e2e | node.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/node.sh
source hack/lib/node.sh
tier=${1:?usage: test-tier.sh setup|unit|mail|faults|apiserver|e2e|node [FILE...]}
shift
# Given files (test-repeat.ts narrows a tier to some), else the whole tier.
if [[ $# -gt 0 ]]; then files=("$@"); else mapfile -t files < <(find "test/$tier" -name '*.test.ts' | sort); fi
if [[ ${#files[@]} -eq 0 ]]; then
  echo "no tests in test/$tier" >&2
  exit 1
fi
# The e2e tier runs the relay from its Deployment's command, which names dist/;
# the faults tier's soak runs the compiled relay too (as the image does).
if [[ $tier == e2e || $tier == faults ]]; then npx tsc -p tsconfig.build.json; fi
concurrency=1
[[ $tier == unit ]] && concurrency=2
reporters=(--test-reporter=spec --test-reporter-destination=stdout)
# hack/test-repeat.ts collects each test's result from every run.
[[ -n ${SMTPC_TEST_RESULTS:-} ]] && reporters+=(--test-reporter=./hack/test-results-reporter.ts --test-reporter-destination="$SMTPC_TEST_RESULTS")
exec node --import tsx --test --test-concurrency="$concurrency" "${reporters[@]}" "${files[@]}"
