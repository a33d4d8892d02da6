#!/usr/bin/env bash
# Writes the kubectl plugin as the one executable file a release ships (docs/releasing.md):
# dist/plugin/main.js behind a shebang. It imports only Node's built-ins, so the file needs
# no checkout and no node_modules; test/e2e/plugin.test.ts runs it alone in a directory.
# Build first: npx tsc -p tsconfig.build.json.
# Usage: hack/plugin-file.sh OUT_FILE VERSION
set -euo pipefail
out=$(realpath -m "${1:?usage: plugin-file.sh OUT_FILE VERSION}")
version=${2:?usage: plugin-file.sh OUT_FILE VERSION}
cd "$(dirname "$0")/.."
# A relative import needs the checkout, a package one node_modules: only node: built-ins keep it one file.
if grep -Pn "\bfrom\s*['\"](?!node:)|^\s*import\s*['\"](?!node:)|\bimport\s*\(\s*['\"](?!node:)" dist/plugin/main.js >&2; then
  echo "plugin-file: dist/plugin/main.js imports more than Node's built-ins (above); the plugin is no longer one file" >&2
  exit 1
fi
# The source map stays behind: the comment naming it would point at a file that is not shipped.
{
  echo "#!/usr/bin/env node"
  echo "// kubectl-smtpconnector $version"
  grep -v '^//# sourceMappingURL=' dist/plugin/main.js
} >"$out"
chmod 755 "$out"
