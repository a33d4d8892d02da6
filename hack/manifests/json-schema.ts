// The two rules every schema kubeconform gets from here follows (hack/manifests/schemas.ts for Kubernetes'
// kinds and our CRDs, crd-schemas.ts for other projects' CRDs): kubeconform's file name for a kind, and
// strictness as kubeconform -strict means it (an object with declared properties refuses any other, so a
// misspelt field is an error, not silently dropped), with Kubernetes' string-or-number types opened to what
// YAML gives.
export type Schema = Record<string, unknown>;

/** kubeconform's file name for a kind: pkg/registry's schemaPath (group's first label, lowercased). */
export function fileName(group: string, version: string, kind: string): string {
  return `${kind.toLowerCase()}-${group ? `${group.split(".")[0]!.toLowerCase()}-` : ""}${version.toLowerCase()}.json`;
}

export const refPrefix = "#/definitions/";

/** The schema with every object closed and Kubernetes' two string-or-number types opened to what YAML gives. */
export function strict(node: unknown, preserveUnknown = false): unknown {
  if (Array.isArray(node)) return node.map((n) => strict(n, preserveUnknown));
  if (!node || typeof node !== "object") return node;
  const schema = { ...(node as Schema) };
  const keep = preserveUnknown || schema["x-kubernetes-preserve-unknown-fields"] === true;
  if (schema.format === "int-or-string" || schema["x-kubernetes-int-or-string"] === true) {
    delete schema.type;
    schema.oneOf = [{ type: "string" }, { type: "integer" }];
  }
  for (const [key, value] of Object.entries(schema)) {
    if (key === "properties" && value && typeof value === "object") {
      schema.properties = Object.fromEntries(Object.entries(value as Schema).map(([k, v]) => [k, strict(v)]));
    } else if (key === "items" || key === "additionalProperties" || key === "allOf" || key === "oneOf" || key === "anyOf") {
      schema[key] = strict(value);
    }
  }
  if (schema.properties && schema.additionalProperties === undefined && !keep) schema.additionalProperties = false;
  return schema;
}
