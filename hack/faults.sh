#!/usr/bin/env bash
# `npm run test:faults`: the fault tier alone, then docs/reliability.md from its figures.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/node.sh
source hack/lib/node.sh
bash hack/setup.sh
export SMTPC_RELIABILITY_DIR
SMTPC_RELIABILITY_DIR=$(mktemp -d)
trap 'rm -rf "$SMTPC_RELIABILITY_DIR"' EXIT
# A new fuzzing seed each run (printed in the test names, so a failure can be replayed).
export SMTPC_FUZZ_SEED=${SMTPC_FUZZ_SEED:-$((RANDOM * 32768 + RANDOM))}
bash hack/test-tier.sh faults
node --import tsx hack/reliability-report.ts "$SMTPC_RELIABILITY_DIR"
