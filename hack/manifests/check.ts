// `npm run check:manifests`: the chart rendered twice (its defaults and
// ci/production-values.yaml), and the objects the operator renders for
// SmtpDomains (hack/manifests/operator-objects.ts: the examples' domains and
// two that set every optional field, under the operator flags of the production
// render), checked by three tools no one here wrote — kubeconform (strict,
// against offline schemas: Kubernetes' own OpenAPI document and our CRDs),
// kube-score and checkov. The examples are checked against the CRDs' schemas
// too. Every finding is fixed or accepted in hack/manifests/accepted.ts (and
// docs/security.md); anything else fails.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseAllDocuments, stringify } from "yaml";
import { parseFlags } from "../../operator/flags.js";
import { accepted, type Accepted } from "./accepted.js";
import { operatorObjects, renderSettings } from "./operator-objects.js";

const root = join(import.meta.dirname, "..", "..");
const work = mkdtempSync(join(tmpdir(), "smtpc-manifests-"));
const started = Date.now();
const timings: string[] = [];

function timed<T>(label: string, run: () => T): T {
  const from = Date.now();
  const result = run();
  timings.push(`${label} ${((Date.now() - from) / 1000).toFixed(1)}s`);
  return result;
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv = {}): { code: number; stdout: string; stderr: string } {
  const result = spawnSync(command, args, { cwd: root, encoding: "utf8", maxBuffer: 64 * 1024 * 1024, env: { ...process.env, ...env } });
  if (result.error) throw result.error;
  return { code: result.status ?? 1, stdout: result.stdout, stderr: result.stderr };
}

interface Finding {
  tool: Accepted["tool"] | "kubeconform";
  check: string;
  render: Accepted["render"];
  object: string;
  message: string;
}

try {
  const tools = timed("tools", () =>
    Object.fromEntries(
      execFileSync("bash", ["hack/manifests/tools.sh"], { cwd: root, encoding: "utf8" })
        .trim()
        .split("\n")
        .map((line) => line.split("=") as [string, string]),
    ),
  );
  const helm = execFileSync("bash", ["hack/helm/build.sh"], { cwd: root, encoding: "utf8" }).trim();

  // Kubernetes' OpenAPI document from the k8s.io/kubernetes module the local control plane is built from.
  const version = readFileSync(join(root, "hack/testenv/VERSION"), "utf8").trim();
  const module = JSON.parse(
    execFileSync("go", ["mod", "download", "-json", `k8s.io/kubernetes@${version}`], { cwd: work, encoding: "utf8" }),
  ) as { Dir: string };
  const schemas = join(work, "schemas");
  timed("schemas", () =>
    execFileSync(
      process.execPath,
      ["--import", "tsx", "hack/manifests/schemas.ts", join(module.Dir, "api/openapi-spec/swagger.json"), schemas],
      { cwd: root, stdio: "inherit" },
    ),
  );

  // An empty kubeconfig naming no reachable server: rendering needs no cluster, and must not find one.
  const kubeconfig = join(work, "kubeconfig");
  writeFileSync(
    kubeconfig,
    "apiVersion: v1\nkind: Config\nclusters: [{name: none, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: none, user: {}}]\ncontexts: [{name: none, context: {cluster: none, user: none}}]\ncurrent-context: none\n",
  );
  const renders: Record<Accepted["render"], string> = {
    defaults: join(work, "defaults.yaml"),
    production: join(work, "production.yaml"),
    operator: join(work, "operator.yaml"),
  };
  timed("render", () => {
    for (const [name, path] of [
      ["defaults", renders.defaults],
      ["production", renders.production],
    ] as const) {
      const values = name === "production" ? ["-f", "charts/smtp-connector/ci/production-values.yaml"] : [];
      const out = run(helm, [
        "template",
        "smtp-connector",
        "charts/smtp-connector",
        "--namespace",
        "smtp-connector-system",
        "--kubeconfig",
        kubeconfig,
        ...values,
      ]);
      if (out.code !== 0) throw new Error(`helm template (${name}): ${out.stderr}`);
      writeFileSync(path, out.stdout);
    }
  });

  // The operator's objects, under the flags the production render gives the operator.
  timed("operator", () => {
    const deployment = parseAllDocuments(readFileSync(renders.production, "utf8"))
      .map((d) => d.toJS() as { kind?: string; spec?: { template: { spec: { containers: { name: string; args?: string[] }[] } } } } | null)
      .find((o) => o?.kind === "Deployment" && o.spec?.template.spec.containers.some((c) => c.name === "operator"));
    const args = deployment?.spec?.template.spec.containers.find((c) => c.name === "operator")?.args;
    if (!args) throw new Error("the production render has no operator Deployment with args");
    const { domains, objects } = operatorObjects(renderSettings(parseFlags(args)));
    writeFileSync(renders.operator, [...domains, ...objects].map((o) => stringify(o)).join("---\n"));
    console.log(
      `operator: ${objects.length} objects for ${new Set(objects.map((o) => o.metadata.labels?.["smtpconnector.dev/domain"])).size} domains`,
    );
  });

  const findings: Finding[] = [];
  // The Prometheus Operator's kinds: schemas from its own CRDs (tools.sh), looked up after ours.
  const locations = [
    "-schema-location",
    `${schemas}/{{ .ResourceKind }}{{ .KindSuffix }}.json`,
    "-schema-location",
    `${tools["prometheus-schemas"]!}/{{ .ResourceKind }}{{ .KindSuffix }}.json`,
  ];
  timed("kubeconform", () => {
    const examples = readdirSync(join(root, "examples"))
      .filter((f) => f.endsWith(".yaml"))
      .map((f) => join("examples", f));
    for (const [name, files] of [
      ["defaults", [renders.defaults]],
      ["production", [renders.production, ...examples]],
      ["operator", [renders.operator]],
    ] as const) {
      const out = run(tools.kubeconform!, ["-strict", "-summary", "-output", "json", ...locations, ...files]);
      const report = JSON.parse(out.stdout || "{}") as {
        resources?: { filename: string; kind: string; name: string; status: string; msg: string }[];
        summary?: Record<string, number>;
      };
      // Nothing is skipped: a kind without a schema is a finding (statusError), not silence.
      for (const r of report.resources ?? []) {
        if (r.status !== "statusValid")
          findings.push({ tool: "kubeconform", check: r.status, render: name, object: `${r.kind}/${r.name}`, message: r.msg });
      }
      if (out.code !== 0 && !(report.resources ?? []).some((r) => r.status !== "statusValid"))
        throw new Error(`kubeconform: ${out.stderr || out.stdout}`);
      console.log(`kubeconform (${name}): ${JSON.stringify(report.summary)}`);
    }
  });

  timed("kube-score", () => {
    for (const [name, path] of Object.entries(renders) as [Accepted["render"], string][]) {
      const out = run(tools["kube-score"]!, ["score", "--kubernetes-version", "v1.31", "-o", "json", path]);
      // A render kube-score cannot read (kubeconform says why) is a finding, not a crash that hides the others.
      if (!out.stdout.trim()) {
        findings.push({ tool: "kube-score", check: "unreadable", render: name, object: path, message: out.stderr.trim() });
        continue;
      }
      const objects = JSON.parse(out.stdout) as {
        object_name: string;
        type_meta: { kind: string };
        checks: { check: { id: string }; grade: number; skipped: boolean; comments: { path: string; summary: string }[] | null }[];
      }[];
      for (const object of objects) {
        for (const check of object.checks) {
          if (check.skipped || check.grade >= 10) continue;
          findings.push({
            tool: "kube-score",
            check: check.check.id,
            render: name,
            object: object.object_name,
            message: (check.comments ?? []).map((c) => `${c.path} ${c.summary}`).join("; "),
          });
        }
      }
    }
  });

  timed("checkov", () => {
    for (const [name, path] of Object.entries(renders) as [Accepted["render"], string][]) {
      // --skip-download: no call to the vendor's platform; the checks are the package's own.
      const out = run(tools.checkov!, ["--file", path, "--framework", "kubernetes", "--quiet", "--skip-download", "-o", "json"], {
        BC_SKIP_MAPPING: "TRUE",
      });
      const parsed = JSON.parse(out.stdout) as unknown;
      const reports = (Array.isArray(parsed) ? parsed : [parsed]) as {
        results?: { failed_checks: { check_id: string; resource: string; check_name: string }[] };
      }[];
      for (const failed of reports.flatMap((r) => r.results?.failed_checks ?? [])) {
        findings.push({ tool: "checkov", check: failed.check_id, render: name, object: failed.resource, message: failed.check_name });
      }
    }
  });

  const key = (f: { tool: string; check: string; render: string }) => `${f.tool} ${f.check} (${f.render})`;
  const acceptedKeys = new Set(accepted.map(key));
  const unexplained = findings.filter((f) => !acceptedKeys.has(key(f)));
  const stale = accepted.filter((a) => !findings.some((f) => key(f) === key(a)));
  for (const f of findings) console.log(`${acceptedKeys.has(key(f)) ? "accepted " : "FINDING  "} ${key(f)} ${f.object}: ${f.message}`);
  for (const a of stale) console.log(`STALE     ${key(a)}: accepted in hack/manifests/accepted.ts, but no longer found`);
  console.log(
    `check:manifests: ${findings.length} findings, ${unexplained.length} unexplained, ${stale.length} stale; ${((Date.now() - started) / 1000).toFixed(1)}s (${timings.join(", ")})`,
  );
  process.exitCode = unexplained.length + stale.length > 0 ? 1 : 0;
} finally {
  rmSync(work, { recursive: true, force: true });
}
