#!/usr/bin/env bash
# `npm run demo`: the product end to end on an embedded local default.
# `npm run demo -- --node`: the same on real pods (a real node, the chart from the built image; root).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/node.sh
source hack/lib/node.sh
bash hack/setup.sh
if [[ " $* " == *" --node "* ]]; then
  exec node --import tsx hack/demo-node.ts "$@"
fi
# The relay runs from its Deployment's command, which names the compiled dist/.
npx tsc -p tsconfig.build.json
exec node --import tsx hack/demo.ts "$@"
