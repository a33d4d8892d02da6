// `npm run test:repeat -- [--tier T]... [--stress N] [--keep] RUNS [FILE...]`:
// runs tiers (default: mail) RUNS times and prints each test's pass rate, so a
// flaky test is found here rather than in CI. FILEs narrow the tiers to those
// files. --stress N runs N busy CPU hogs (stress-ng, from Debian) beside the
// tests, as a loaded CI machine would. The apiserver and e2e tiers get one
// control plane per run. Each run's output goes to a log in the results
// directory (printed); exit status 1 if any test failed in any run.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createWriteStream } from "node:fs";

interface Options {
  tiers: string[];
  stress: number;
  runs: number;
  files: string[];
}
interface Result {
  file: string;
  name: string;
  passed: boolean;
  skipped: boolean;
  ms: number;
  failure?: string;
}

const tierNames = ["setup", "unit", "mail", "faults", "apiserver", "e2e"];
const usage = "usage: npm run test:repeat -- [--tier setup|unit|mail|faults|apiserver|e2e]... [--stress N] RUNS [FILE...]";

function parse(argv: string[]): Options {
  const options: Options = { tiers: [], stress: 0, runs: 0, files: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    const value = () => {
      const next = argv[++i];
      if (next === undefined) fail(`${arg} needs a value`);
      return next;
    };
    if (arg === "--tier") {
      const tier = value();
      if (!tierNames.includes(tier)) fail(`unknown tier '${tier}'`);
      options.tiers.push(tier);
    } else if (arg === "--stress") options.stress = count(value(), "--stress");
    else if (arg === "-h" || arg === "--help") fail("");
    else if (options.runs === 0) options.runs = count(arg, "RUNS");
    else if (existsSync(arg)) options.files.push(arg);
    else fail(`no such test file: ${arg}`);
  }
  if (options.runs < 1) fail("RUNS (a whole number of at least 1) is required");
  if (options.tiers.length === 0)
    options.tiers = [...new Set(options.files.map((f) => f.split("/")[1] ?? ""))].filter((t) => tierNames.includes(t));
  if (options.tiers.length === 0) options.tiers = ["mail"];
  return options;
}

function count(text: string, what: string): number {
  if (!/^\d+$/.test(text)) fail(`${what} must be a whole number, got '${text}'`);
  return Number(text);
}

function fail(message: string): never {
  if (message) console.error(`test:repeat: ${message}`);
  console.error(usage);
  process.exit(2);
}

function startStress(workers: number): ChildProcess | undefined {
  if (workers === 0) return undefined;
  if (spawnSync("sh", ["-c", "command -v stress-ng"]).status !== 0) {
    console.error("test:repeat: installing stress-ng (Debian)");
    const install = spawnSync(
      "sh",
      ["-c", "apt-get install -y -qq stress-ng >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq stress-ng)"],
      { stdio: "inherit" },
    );
    if (install.status !== 0) fail("could not install stress-ng (apt-get install stress-ng, as root)");
  }
  // A time limit too, so a killed test:repeat never leaves the hogs behind for long.
  return spawn("stress-ng", ["--cpu", String(workers), "--timeout", "4h", "--quiet"], { stdio: "ignore" });
}

/** One run of every tier; its results appended to `results`, its output to `log`. */
async function runOnce(options: Options, results: string, log: string): Promise<number> {
  const out = createWriteStream(log);
  const env = { ...process.env, SMTPC_TEST_RESULTS: results };
  const filesOf = (tier: string) => options.files.filter((f) => f.startsWith(`test/${tier}/`));
  const plain = options.tiers.filter((t) => t !== "apiserver" && t !== "e2e");
  const withPlane = options.tiers.filter((t) => t === "apiserver" || t === "e2e");
  let status = 0;
  const step = (command: string, args: string[]) =>
    new Promise<number>((resolve) => {
      const child = spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"] });
      child.stdout.pipe(out, { end: false });
      child.stderr.pipe(out, { end: false });
      child.on("exit", (code) => resolve(code ?? 1));
    });
  for (const tier of plain) status ||= await step("bash", ["hack/test-tier.sh", tier, ...filesOf(tier)]);
  if (withPlane.length > 0) {
    const script = withPlane.map((t) => ["bash hack/test-tier.sh", t, ...filesOf(t)].join(" ")).join(" && ");
    status ||= await step("node", ["--import", "tsx", "hack/with-controlplane.ts", "bash", "-c", script]);
  }
  await new Promise((resolve) => out.end(resolve));
  return status;
}

function report(results: Result[], runs: number): boolean {
  const byTest = new Map<string, Result[]>();
  for (const r of results) {
    const key = `${r.file.replace(`${process.cwd()}/`, "")} › ${r.name}`;
    byTest.set(key, [...(byTest.get(key) ?? []), r]);
  }
  const rows = [...byTest].map(([key, rs]) => ({ key, rs, passed: rs.filter((r) => r.passed || r.skipped).length }));
  rows.sort((a, b) => a.passed / a.rs.length - b.passed / b.rs.length || a.key.localeCompare(b.key));
  const flaky = rows.filter((row) => row.passed < row.rs.length);
  console.log(`\n${byTest.size} tests, ${runs} runs; ${flaky.length} failed at least once`);
  for (const row of flaky) {
    console.log(`  ${row.passed}/${row.rs.length} passed  ${row.key}`);
    for (const r of row.rs.filter((r) => !r.passed && !r.skipped).slice(0, 3)) console.log(`      ${(r.failure ?? "").split("\n")[0]}`);
  }
  const slowest = rows
    .map((row) => ({ key: row.key, ms: Math.max(...row.rs.map((r) => r.ms)) }))
    .sort((a, b) => b.ms - a.ms)
    .slice(0, 5);
  console.log("slowest (longest of any run):");
  for (const s of slowest) console.log(`  ${(s.ms / 1000).toFixed(1)} s  ${s.key}`);
  return flaky.length === 0;
}

const options = parse(process.argv.slice(2));
const dir = mkdtempSync(join(tmpdir(), "smtpc-repeat-"));
console.log(
  `test:repeat: ${options.tiers.join(", ")} × ${options.runs}${options.stress ? ` beside ${options.stress} CPU hogs` : ""}; logs in ${dir}`,
);
const stress = startStress(options.stress);
const stop = () => stress?.kill("SIGTERM");
process.on("SIGINT", () => (stop(), process.exit(130)));
process.on("SIGTERM", () => (stop(), process.exit(143)));
const all: Result[] = [];
try {
  for (let run = 1; run <= options.runs; run++) {
    const results = join(dir, `run-${run}.jsonl`);
    const started = Date.now();
    const status = await runOnce(options, results, join(dir, `run-${run}.log`));
    const these = existsSync(results)
      ? readFileSync(results, "utf8")
          .split("\n")
          .filter(Boolean)
          .map((line) => JSON.parse(line) as Result)
      : [];
    all.push(...these);
    const failed = these.filter((r) => !r.passed && !r.skipped).length;
    console.log(
      `run ${run}: ${these.length - failed} passed, ${failed} failed, exit ${status}, ${((Date.now() - started) / 1000).toFixed(0)} s`,
    );
  }
} finally {
  stop();
}
process.exit(report(all, options.runs) ? 0 : 1);
