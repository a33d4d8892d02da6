// What the two demos share (hack/demo.ts on the embedded local default,
// hack/demo-node.ts on real pods): the narration, the cleanup that runs once on
// the way out or on Ctrl-C, the chart install, and the steps a user runs by hand.
import { helm } from "../../test/support/helm.js";
import { kubectl } from "../../test/support/kube.js";
import { swaksCustomer } from "../../test/support/mail.js";

export const step = (text: string): void => console.log(`\n== ${text}`);

/** Runs kubectl as the user would, printing the command and what it printed; throws when it fails. */
export async function show(args: string[]): Promise<void> {
  console.log(`$ kubectl ${args.join(" ")}`);
  const result = await kubectl(args);
  process.stdout.write(result.stdout + result.stderr);
  if (result.code !== 0) throw new Error(`kubectl ${args.join(" ")} failed`);
}

export type Cleanups = (() => Promise<unknown>)[];

/**
 * Runs a demo: `body` pushes a cleanup for each thing it starts; they run in reverse, once, when it ends, fails or
 * gets SIGINT/SIGTERM (then exit 130), and the last line says what they stopped.
 */
export async function runDemo(stopped: string, body: (cleanups: Cleanups) => Promise<void>): Promise<void> {
  const cleanups: Cleanups = [];
  let cleaning: Promise<void> | undefined;
  const cleanUp = () =>
    (cleaning ??= (async () => {
      for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
      console.log(`\nstopped: ${stopped}`);
    })());
  // Ctrl-C at any point stops everything that was started.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      console.log(`\n${signal}: cleaning up`);
      void cleanUp().then(() => process.exit(130));
    });
  }
  try {
    await body(cleanups);
  } catch (error) {
    console.error(`\ndemo failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  } finally {
    await cleanUp();
  }
}

/** The chart's values for an image built in this run and imported into the node (`repository:tag`, never pulled). */
export function builtImageValues(image: string): string[] {
  const colon = image.lastIndexOf(":");
  return [`image.repository=${image.slice(0, colon)}`, `image.tag=${image.slice(colon + 1)}`, "image.pullPolicy=Never"];
}

/**
 * helm install `release` (smtp-connector unless told) of charts/smtp-connector into `namespace` (created), with each
 * of `values` as --set; its output.
 */
export async function installChart(namespace: string, values: string[], release = "smtp-connector"): Promise<string> {
  const installed = await helm([
    "install",
    release,
    "charts/smtp-connector",
    "--namespace",
    namespace,
    "--create-namespace",
    ...values.flatMap((v) => ["--set", v]),
  ]);
  if (installed.code !== 0) throw new Error(`helm install failed: ${installed.stderr}`);
  return installed.stdout;
}

/** kubectl apply -f examples/, as a platform team applies them as shipped. */
export async function applyExamples(): Promise<void> {
  const applied = await kubectl(["apply", "-f", "examples/"]);
  if (applied.code !== 0) throw new Error(`kubectl apply -f examples/ failed: ${applied.stderr}`);
  process.stdout.write(applied.stdout);
}

/** kubectl patch --type=merge in `namespace`, printing the command. */
export async function patch(namespace: string, kind: string, name: string, value: object): Promise<void> {
  console.log(`$ kubectl patch ${kind} ${name} -n ${namespace} --type=merge -p '${JSON.stringify(value)}'`);
  const result = await kubectl(["patch", kind, name, "-n", namespace, "--type=merge", "-p", JSON.stringify(value)]);
  if (result.code !== 0) throw new Error(`kubectl patch failed: ${result.stderr}`);
}

/**
 * Each call reads `kubectl get supportaddresses` and prints the table when it changed since the last call; resolves
 * to its rows, white space folded, each through `row`.
 */
export function addressTable(namespace: string, row: (line: string) => string = (line) => line): () => Promise<string[]> {
  let last = "";
  return async () => {
    const table = await kubectl(["get", "supportaddresses", "-n", namespace, "--no-headers"]);
    const lines = table.stdout
      .trim()
      .split("\n")
      .map((l) => row(l.trim().replace(/\s+/g, " ")));
    if (lines.join("\n") !== last) console.log(lines.map((l) => `  ${l}`).join("\n"));
    last = lines.join("\n");
    return lines;
  };
}

/** A customer's email to support@example.com, submitted to the customer's server at `server`. */
export async function customerEmail(server: string): Promise<void> {
  const inbound = await swaksCustomer(server, "My printer is on fire");
  if (inbound.code !== 0) throw new Error(`the inbound email failed:\n${inbound.output}`);
}

/** The header lines of a message that match `pattern`, one a line. */
export const headerLines = (content: string, pattern: RegExp): string =>
  content
    .split("\n\n")[0]!
    .split("\n")
    .filter((l) => pattern.test(l))
    .join("\n");
