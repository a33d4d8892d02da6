// `npm run generate`: writes every generated file from its source of truth.
// A unit test (test/unit/generated.test.ts) fails when these files drift.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { generatedFiles } from "./generated-files.js";

const root = join(import.meta.dirname, "..");
for (const [path, content] of Object.entries(generatedFiles())) {
  writeFileSync(join(root, path), content);
  console.log(`wrote ${path}`);
}
