// Every generated file of the repository and its content, computed from its
// source of truth. Shared by `npm run generate` and the drift test.
import { stringify } from "yaml";
import { crdFileName, customResourceDefinition, generatedHeader } from "../crds/render.js";
import { kinds } from "../crds/schema.js";
import { apiReference } from "./api-docs.js";
import { relayConfigReference } from "./relay-config-docs.js";

export function generatedFiles(): Record<string, string> {
  const files: Record<string, string> = {};
  for (const kind of kinds) {
    files[`crds/${crdFileName(kind)}`] = generatedHeader + stringify(customResourceDefinition(kind), { lineWidth: 0 });
  }
  files["docs/api.md"] = apiReference();
  files["docs/relay-config.md"] = relayConfigReference();
  return files;
}
