#!/usr/bin/env bash
# `node` at the pinned version (.node-version), for the npm scripts.
set -euo pipefail
# shellcheck source=lib/node.sh
source "$(dirname "$0")/lib/node.sh"
exec node "$@"
