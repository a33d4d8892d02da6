#!/usr/bin/env bash
# `npm run demo`: the product end to end on an embedded local default.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/node.sh
source hack/lib/node.sh
bash hack/setup.sh
# The relay runs from its Deployment's command, which names the compiled dist/.
npx tsc -p tsconfig.build.json
exec node --import tsx hack/demo.ts "$@"
