// kubeconform's schemas, offline: one JSON schema per kind, named the way
// kubeconform looks them up (KIND-GROUP-VERSION.json; KIND-VERSION.json for the
// core group), from two sources of truth and no download:
//  - Kubernetes' own OpenAPI document (api/openapi-spec/swagger.json of the
//    k8s.io/kubernetes module the local control plane is built from, so the
//    schemas are the API server's we test against), and
//  - our CRDs (crds/*.yaml), their openAPIV3Schema.
// Strict as kubeconform -strict means it: an object with declared properties
// refuses any other (a misspelt field is an error, not silently dropped).
// Usage: schemas.ts SWAGGER_JSON OUT_DIR
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { fileName, refPrefix, strict, type Schema } from "./json-schema.js";

const [swaggerPath, out] = process.argv.slice(2);
if (!swaggerPath || !out) {
  console.error("usage: schemas.ts SWAGGER_JSON OUT_DIR");
  process.exit(2);
}

/** The definitions a schema reaches through $ref, each once (some are recursive: JSONSchemaProps). */
function reachable(root: unknown, definitions: Record<string, Schema>): Set<string> {
  const seen = new Set<string>();
  const walk = (node: unknown) => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (!node || typeof node !== "object") return;
    for (const [key, value] of Object.entries(node as Schema)) {
      if (key === "$ref" && typeof value === "string" && value.startsWith(refPrefix)) {
        const name = value.slice(refPrefix.length);
        if (!seen.has(name)) {
          seen.add(name);
          walk(definitions[name]);
        }
      } else walk(value);
    }
  };
  walk(root);
  return seen;
}

mkdirSync(out, { recursive: true });
const swagger = JSON.parse(readFileSync(swaggerPath, "utf8")) as { definitions: Record<string, Schema> };
const definitions: Record<string, Schema> = {};
for (const [name, definition] of Object.entries(swagger.definitions)) definitions[name] = strict(definition) as Schema;
// Quantities are strings in the OpenAPI document; YAML writes `cpu: 1` as a number, which the API server takes.
definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"] = { oneOf: [{ type: "string" }, { type: "number" }] };
let written = 0;
for (const definition of Object.values(definitions)) {
  const kinds = (definition["x-kubernetes-group-version-kind"] ?? []) as { group: string; version: string; kind: string }[];
  for (const { group, version, kind } of kinds) {
    const used = reachable(definition, definitions);
    const schema = {
      $schema: "http://json-schema.org/draft-07/schema#",
      ...definition,
      definitions: Object.fromEntries([...used].map((n) => [n, definitions[n]])),
    };
    delete (schema as Schema)["x-kubernetes-group-version-kind"];
    writeFileSync(join(out, fileName(group, version, kind)), JSON.stringify(schema));
    written++;
  }
}

// Our CRDs: metadata is Kubernetes' ObjectMeta, the rest the CRD's own schema.
const crdDir = join(import.meta.dirname, "..", "..", "crds");
for (const file of readdirSync(crdDir).filter((f) => f.endsWith(".yaml"))) {
  const crd = parse(readFileSync(join(crdDir, file), "utf8")) as {
    spec: { group: string; names: { kind: string }; versions: { name: string; schema: { openAPIV3Schema: Schema } }[] };
  };
  for (const version of crd.spec.versions) {
    const root = strict(version.schema.openAPIV3Schema) as Schema & { properties: Schema };
    const objectMeta = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
    root.properties = { ...root.properties, metadata: { $ref: refPrefix + objectMeta } };
    const used = reachable(root, definitions);
    const schema = {
      $schema: "http://json-schema.org/draft-07/schema#",
      ...root,
      definitions: Object.fromEntries([...used].map((n) => [n, definitions[n]])),
    };
    writeFileSync(join(out, fileName(crd.spec.group, version.name, crd.spec.names.kind)), JSON.stringify(schema));
    written++;
  }
}
console.error(`schemas: ${written} kinds written to ${out}`);
