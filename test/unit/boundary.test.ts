// The boundary between the two processes (ADR 0013): the operator reaches the
// relay only through the relay's published contract (relay/contract/), and the
// contract and the shared library (lib/) stand on their own. So loading the
// operator never loads the relay's SMTP client, spool or write batching, and a
// change inside the relay cannot break the operator unseen.
import assert from "node:assert/strict";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, normalize, relative } from "node:path";
import { test } from "node:test";

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith(".ts") && !path.endsWith(".test.ts") ? [path] : [];
  });
}

/** Every module a file names: static imports (type-only ones too), re-exports and dynamic imports. */
function specifiers(text: string): string[] {
  const found = [
    ...text.matchAll(/^\s*(?:import|export)\b[^;"']*?\bfrom\s*["']([^"']+)["']/gm),
    ...text.matchAll(/^\s*import\s*["']([^"']+)["']/gm),
    ...text.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g),
  ];
  return found.map((m) => m[1]!);
}

/** The repository path a relative specifier resolves to (the .ts source of a .js specifier), or undefined for a package. */
function resolved(from: string, specifier: string): string | undefined {
  if (!specifier.startsWith(".")) return undefined;
  return normalize(join(dirname(from), specifier)).replace(/\.js$/, ".ts");
}

const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { dependencies: Record<string, string> };
const packageName = (s: string) => (s.startsWith("@") ? s.split("/").slice(0, 2).join("/") : s.split("/")[0]!);
const isPlatform = (s: string) => s.startsWith("node:") || builtinModules.includes(s);

/**
 * The imports of `files` that break a rule: `allowed` says whether a repository path may be imported;
 * with `packages`, a package must be Node's or a production dependency, type-only imports included.
 */
function violations(files: readonly string[], allowed: (target: string) => boolean, packages = true): string[] {
  return files.flatMap((file) =>
    specifiers(readFileSync(file, "utf8")).flatMap((specifier) => {
      const target = resolved(file, specifier);
      if (target === undefined)
        return !packages || isPlatform(specifier) || packageName(specifier) in pkg.dependencies
          ? []
          : [`${file} imports the package ${specifier}`];
      return allowed(target) ? [] : [`${file} imports ${relative(".", target)}`];
    }),
  );
}

const inside = (folder: string) => (target: string) => target.startsWith(`${folder}/`);

test("the operator and the CRD sources import nothing of the relay but its contract", () => {
  const product = ["operator", "crds"].flatMap(sources);
  assert.deepEqual(
    violations(product, (target) => !inside("relay")(target) || inside("relay/contract")(target), false),
    [],
  );
});

test("the relay's contract imports only itself, the shared library, Node and production packages", () => {
  assert.deepEqual(
    violations(sources("relay/contract"), (target) => inside("relay/contract")(target) || inside("lib")(target)),
    [],
  );
});

test("the shared library imports only itself, Node and production packages", () => {
  assert.deepEqual(violations(sources("lib"), inside("lib")), []);
});

test("the import scan sees every form an import can take", () => {
  const text = [
    'import { a } from "./x.js";',
    'import type { B } from "../relay/forward/smtp-client.js";',
    "import {\n  c,\n  type D,\n} from '../relay/ops/reports.js';",
    'export { e } from "./y.js";',
    'import "./side-effect.js";',
    'const m = await import("../relay/relay.js");',
  ].join("\n");
  assert.deepEqual(specifiers(text), [
    "./x.js",
    "../relay/forward/smtp-client.js",
    "../relay/ops/reports.js",
    "./y.js",
    "./side-effect.js",
    "../relay/relay.js",
  ]);
});
