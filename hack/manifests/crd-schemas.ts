// Another project's CRDs as kubeconform schemas, in the way kubeconform's own openapi2jsonschema.py converts
// them (written here, not copied): one file per kind and served version from its openAPIV3Schema, named as
// kubeconform looks it up, closed as -strict means it (json-schema.ts). metadata stays as the CRD declares it
// (an open object): the CRD does not carry ObjectMeta's schema. hack/manifests/tools.sh runs it once per
// version of the Prometheus Operator's CRDs and caches the result, so the chart's ServiceMonitor, PodMonitor
// and PrometheusRule are validated, not skipped.
// Usage: crd-schemas.ts OUT_DIR CRD_YAML...
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { fileName, strict, type Schema } from "./json-schema.js";

interface CustomResourceDefinition {
  kind?: string;
  spec?: { group: string; names: { kind: string }; versions: { name: string; served?: boolean; schema?: { openAPIV3Schema?: Schema } }[] };
}

/** The schemas of one file's CRDs, by kubeconform file name. */
export function crdSchemas(text: string, source: string): Map<string, Schema> {
  const out = new Map<string, Schema>();
  for (const document of parseAllDocuments(text)) {
    if (document.errors.length > 0) throw new Error(`${source}: ${document.errors[0]!.message}`);
    const crd = document.toJS() as CustomResourceDefinition | null;
    if (!crd || crd.kind !== "CustomResourceDefinition" || !crd.spec) continue;
    for (const version of crd.spec.versions) {
      if (version.served === false) continue;
      const root = version.schema?.openAPIV3Schema;
      if (!root) throw new Error(`${source}: ${crd.spec.names.kind} ${version.name} has no openAPIV3Schema`);
      out.set(fileName(crd.spec.group, version.name, crd.spec.names.kind), {
        $schema: "http://json-schema.org/draft-07/schema#",
        ...(strict(root) as Schema),
      });
    }
  }
  if (out.size === 0) throw new Error(`${source}: no CustomResourceDefinition with a schema`);
  return out;
}

if (import.meta.filename === process.argv[1]) {
  const [out, ...files] = process.argv.slice(2);
  if (!out || files.length === 0) {
    console.error("usage: crd-schemas.ts OUT_DIR CRD_YAML...");
    process.exit(2);
  }
  mkdirSync(out, { recursive: true });
  let written = 0;
  for (const file of files) {
    for (const [name, schema] of crdSchemas(readFileSync(file, "utf8"), file)) {
      writeFileSync(join(out, name), JSON.stringify(schema));
      written++;
    }
  }
  console.error(`crd-schemas: ${written} kinds written to ${out}`);
}
