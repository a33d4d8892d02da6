// What can be checked of the image without a container engine: the build
// context has what the Dockerfile copies, the runtime stage is non-root with
// production dependencies only, the product code imports nothing else at
// runtime, and the entrypoints are exactly the commands the operator's relay
// Deployment and the chart's operator Deployment run (the ones the tests run).
import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { builtinModules } from "node:module";
import { join } from "node:path";
import { test } from "node:test";
import type { SmtpDomain } from "../../crds/schema.js";
import { relayDeployment } from "../../operator/domain/render.js";

const dockerfile = readFileSync("Dockerfile", "utf8");
const stages = dockerfile.split(/^FROM /m).slice(1);
const pkg = JSON.parse(readFileSync("package.json", "utf8")) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

test("the build context holds every file the Dockerfile copies, and .dockerignore lets exactly those in", () => {
  const ignore = readFileSync(".dockerignore", "utf8")
    .split("\n")
    .filter((l) => l.startsWith("!"))
    .map((l) => l.slice(1).replace(/\/\*\*$/, ""));
  for (const [, sources] of dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
    for (const source of sources!.split(" ")) {
      assert.ok(existsSync(source), `${source} exists`);
      assert.ok(ignore.includes(source), `${source} is let into the context`);
    }
  }
});

test("every stage is built on the Node runtime of .node-version", () => {
  const version = readFileSync(".node-version", "utf8").trim();
  assert.match(dockerfile, new RegExp(`^ARG NODE_VERSION=${version.replaceAll(".", "\\.")}$`, "m"));
  assert.equal(stages.length, 3);
  for (const stage of stages) assert.match(stage, /^node:\$\{NODE_VERSION\}-bookworm-slim\b/);
});

test("the runtime stage runs as a non-root user with production dependencies only, and no npm", () => {
  const runtime = stages.at(-1)!;
  assert.match(runtime, /^USER 65532:65532$/m);
  assert.match(runtime, /rm -rf \/usr\/local\/lib\/node_modules\/npm/);
  assert.match(stages[1]!, /npm ci --omit=dev/);
  assert.match(runtime, /COPY --from=deps \/app\/node_modules node_modules/);
});

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith(".ts") && !path.endsWith(".test.ts") ? [path] : [];
  });
}

test("product code imports at runtime only Node's modules and production dependencies", () => {
  for (const file of ["lib", "operator", "relay", "crds", "plugin"].flatMap(sources)) {
    const text = readFileSync(file, "utf8");
    // `import type` is erased by the compiler; everything else is loaded at runtime.
    for (const [, specifier] of text.matchAll(/^import (?!type )[^"]*"([^"]+)";$/gm)) {
      if (specifier!.startsWith(".") || specifier!.startsWith("node:") || builtinModules.includes(specifier!)) continue;
      const name = specifier!.startsWith("@") ? specifier!.split("/").slice(0, 2).join("/") : specifier!.split("/")[0]!;
      assert.ok(name in pkg.dependencies, `${file} imports ${name}, which is not a production dependency`);
    }
  }
});

test("the entrypoints are the commands the Deployments run, and the tests with them", () => {
  assert.match(stages.at(-1)!, /^CMD \["node", "dist\/operator\/main\.js"\]$/m);
  const domain = {
    apiVersion: "smtpconnector.dev/v1alpha1",
    kind: "SmtpDomain",
    metadata: { name: "d", namespace: "n", uid: "u" },
    spec: { domain: "example.com", inbound: { delivery: { smtp: { host: "h", port: 25 } } } },
  } as SmtpDomain;
  const relay = relayDeployment(domain, { relayImage: "img", relayHostSuffix: "s" }) as unknown as {
    spec: { template: { spec: { containers: { command: string[] }[] } } };
  };
  const [node, script] = relay.spec.template.spec.containers[0]!.command;
  assert.equal(node, "node");
  assert.equal(script, "dist/relay/main.js");
  // The operator's command is node, its heap flags (operator.heap), then the script.
  const chartCommand = /command:\n\s+- node\n(?:.*\n)*?\s+- (\S+)\n\s+args:/.exec(
    readFileSync("charts/smtp-connector/templates/deployment.yaml", "utf8"),
  );
  assert.equal(chartCommand?.[1], "dist/operator/main.js");
  // Both scripts are what `tsc -p tsconfig.build.json` emits from the entry files.
  for (const entry of ["operator/main.ts", "relay/main.ts"]) assert.ok(existsSync(entry));
});

test("the build stage copies exactly the folders tsconfig.build.json compiles", () => {
  const { include } = JSON.parse(readFileSync("tsconfig.build.json", "utf8")) as { include: string[] };
  const copied = [...stages[0]!.matchAll(/^COPY (\S+) \1$/gm)].map((m) => m[1]!);
  assert.deepEqual([...copied].sort(), [...include].sort());
  for (const folder of include) assert.ok(statSync(folder).isDirectory(), `${folder} is a folder`);
});
