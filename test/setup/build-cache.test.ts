// The build scripts share one cache per machine, and two test runs may start
// at once (two clones, CI beside a developer): each build must come out whole,
// once, whoever else is building the same entry.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { promisify } from "node:util";

const run = promisify(execFile);
const cache = mkdtempSync(join(tmpdir(), "smtpc-cache-"));
after(() => rmSync(cache, { recursive: true, force: true }));

/** Runs one build script as a second checkout would, with its own cache root. */
async function build(script: string): Promise<{ path: string; stderr: string }> {
  const { stdout, stderr } = await run("bash", [script], { env: { ...process.env, SMTPC_CACHE_DIR: cache }, maxBuffer: 64 << 20 });
  return { path: stdout.trim().split("\n").at(-1) ?? "", stderr };
}

test("two gitops-check builds at once both succeed, and only one of them builds", async () => {
  const [a, b] = await Promise.all([build("hack/gitops-check/build.sh"), build("hack/gitops-check/build.sh")]);
  assert.equal(a.path, b.path);
  assert.ok(existsSync(a.path), a.path);
  const builders = [a, b].filter((r) => r.stderr.includes("building into"));
  assert.equal(builders.length, 1, `both built:\n${a.stderr}\n${b.stderr}`);
  // Nothing half-made is left beside the entry.
  assert.deepEqual(
    readdirSync(join(cache, "gitops-check")).filter((n) => n.includes(".tmp.") || n.endsWith(".partial")),
    [],
  );
  await run(a.path, ["--help"]).catch((error: { code?: number }) => assert.notEqual(error.code, 126));
});

test("two installs of the pinned Node at once both succeed with the same runtime", async () => {
  const script = "source hack/lib/node.sh && command -v node && node --version";
  const once = () => run("bash", ["-c", script], { env: { ...process.env, SMTPC_CACHE_DIR: cache } });
  const [a, b] = await Promise.all([once(), once()]);
  assert.equal(a.stdout, b.stdout);
  assert.match(a.stdout, new RegExp(`^${cache}/node/[0-9.]+/bin/node\\nv[0-9.]+\\n$`));
  assert.ok([a, b].filter((r) => r.stderr.includes("installing Node")).length <= 1);
});
