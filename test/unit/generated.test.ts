// Generated files match their source of truth, and the API schema keeps the
// promises kubectl explain and structural schemas depend on.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { customResourceDefinitions } from "../../crds/render.js";
import { generatedFiles } from "../../hack/generated-files.js";

const root = join(import.meta.dirname, "..", "..");

describe("generated files", () => {
  for (const [path, content] of Object.entries(generatedFiles())) {
    test(`${path} is up to date (run npm run generate)`, () => {
      assert.equal(readFileSync(join(root, path), "utf8"), content);
    });
  }
});

type Node = Record<string, unknown>;

function* walk(node: Node, path: string): Generator<[string, Node]> {
  yield [path, node];
  for (const [name, child] of Object.entries((node.properties ?? {}) as Record<string, Node>)) {
    yield* walk(child, `${path}.${name}`);
  }
  if (node.items) yield* walk(node.items as Node, `${path}[]`);
  if (node.additionalProperties && typeof node.additionalProperties === "object") {
    yield* walk(node.additionalProperties as Node, `${path}{}`);
  }
}

describe("CRD schemas", () => {
  for (const crd of customResourceDefinitions()) {
    const name = (crd.metadata as Node).name as string;
    const root = (((crd.spec as Node).versions as Node[])[0]!.schema as Node).openAPIV3Schema as Node;

    test(`${name}: every spec and status field has a description`, () => {
      const props = root.properties as Record<string, Node>;
      const missing = [...walk(props.spec!, "spec"), ...walk(props.status!, "status")]
        .filter(([path, node]) => !path.endsWith("{}") && !path.endsWith("[]") && !node.description)
        .map(([path]) => path);
      assert.deepEqual(missing, []);
    });

    test(`${name}: structural (a type everywhere, no unions or pattern properties)`, () => {
      for (const [path, node] of walk(root, "")) {
        // Kubernetes' one exception: an integer-or-string (a quantity) has no type of its own.
        assert.ok(typeof node.type === "string" || node["x-kubernetes-int-or-string"] === true, `${path} has no type`);
        for (const banned of ["anyOf", "oneOf", "allOf", "patternProperties", "$id", "const"]) {
          assert.equal(node[banned], undefined, `${path} uses ${banned}`);
        }
      }
    });

    test(`${name}: every CEL rule has a message, and strings it reads are bounded`, () => {
      for (const [path, node] of walk(root, "")) {
        for (const rule of (node["x-kubernetes-validations"] ?? []) as Node[]) {
          assert.ok(typeof rule.message === "string" && rule.message.length > 10, `${path}: rule ${String(rule.rule)} has no message`);
        }
        if (node.type === "string" && node["x-kubernetes-validations"]) {
          assert.ok(typeof node.maxLength === "number", `${path}: a string with CEL rules needs maxLength`);
        }
      }
    });
  }
});
