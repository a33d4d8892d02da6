// Other projects' CRDs as kubeconform schemas (hack/manifests/crd-schemas.ts): one per served version, named as
// kubeconform looks it up, closed to undeclared fields except where the CRD keeps unknown fields.
import assert from "node:assert/strict";
import { test } from "node:test";
import { crdSchemas } from "../../hack/manifests/crd-schemas.js";

const crd = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.monitoring.example.com}
spec:
  group: monitoring.example.com
  names: {kind: Widget}
  versions:
    - name: v1
      served: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                port: {anyOf: [{type: integer}, {type: string}], x-kubernetes-int-or-string: true}
                extra: {type: object, x-kubernetes-preserve-unknown-fields: true, properties: {a: {type: string}}}
    - name: v0
      served: false
      schema: {openAPIV3Schema: {type: object}}
`;

test("a CRD's served versions become strict kubeconform schemas", () => {
  const schemas = crdSchemas(crd, "widgets.yaml");
  assert.deepEqual([...schemas.keys()], ["widget-monitoring-v1.json"]);
  const root = schemas.get("widget-monitoring-v1.json") as {
    additionalProperties: boolean;
    properties: { spec: { additionalProperties: boolean; properties: Record<string, Record<string, unknown>> } };
  };
  assert.equal(root.additionalProperties, false);
  assert.equal(root.properties.spec.additionalProperties, false, "a misspelt field is an error");
  assert.deepEqual(root.properties.spec.properties.port!.oneOf, [{ type: "string" }, { type: "integer" }]);
  assert.equal(root.properties.spec.properties.extra!.additionalProperties, undefined, "preserve-unknown-fields stays open");
});

test("a file with no CRD schema is refused, not turned into nothing", () => {
  assert.throws(() => crdSchemas("kind: ConfigMap\n", "x.yaml"), /x\.yaml: no CustomResourceDefinition/);
});
