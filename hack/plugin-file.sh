#!/usr/bin/env bash
# Writes the kubectl plugin as the one executable file a release ships (docs/releasing.md):
# dist/plugin/main.js behind a shebang. It uses only Node's built-ins, so the file needs no
# checkout and no node_modules; test/e2e/plugin.test.ts runs it alone in a directory.
# Build first: npx tsc -p tsconfig.build.json.
# Usage: hack/plugin-file.sh OUT_FILE VERSION
set -euo pipefail
out=$(realpath -m "${1:?usage: plugin-file.sh OUT_FILE VERSION}")
version=${2:?usage: plugin-file.sh OUT_FILE VERSION}
cd "$(dirname "$0")/.."
# tsc marks the file an ES module with a last `export {};`. Without it, and with the built-ins taken
# by process.getBuiltinModule, the file is a plain script: Node runs it alike as CommonJS or as an ES
# module, whatever package.json is nearest where it is installed. A relative import would need the
# checkout, a package one node_modules.
body=$(grep -v -e '^//# sourceMappingURL=' -e '^export {};$' dist/plugin/main.js)
if grep -Pn "^\s*(import|export)\b|\bimport\s*\(|\brequire\s*\(" <<<"$body" >&2; then
  echo "plugin-file: dist/plugin/main.js imports, exports or requires (above): take Node's built-ins with process.getBuiltinModule; the plugin must stay one plain script" >&2
  exit 1
fi
{
  echo "#!/usr/bin/env node"
  echo "// kubectl-smtpconnector $version"
  # Strict as the ES module it was compiled as, also when Node loads it as CommonJS.
  echo "\"use strict\";"
  echo "$body"
} >"$out"
chmod 755 "$out"
