// Every place that names the version being released. One version number makes the image, the packaged
// chart, the CRD bundle and the plugin (docs/releasing.md); test/unit/release.test.ts fails when these
// disagree, and hack/release.sh refuses to build from a tree where they do.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";

const root = join(import.meta.dirname, "..");
const read = (path: string) => readFileSync(join(root, path), "utf8");

export function releaseVersions(): Record<string, string | undefined> {
  const pkg = JSON.parse(read("package.json")) as { version: string };
  const lock = JSON.parse(read("package-lock.json")) as { version?: string; packages?: Record<string, { version?: string }> };
  const chart = parse(read("charts/smtp-connector/Chart.yaml")) as { version: string; appVersion: string };
  const values = parse(read("charts/smtp-connector/values.yaml")) as { image: { tag?: string } };
  const changelog = /^## (\S+)/m.exec(read("CHANGELOG.md"))?.[1];
  return {
    "package.json version": pkg.version,
    "package-lock.json version": lock.version,
    'package-lock.json packages[""].version': lock.packages?.[""]?.version,
    "Chart.yaml version": String(chart.version),
    "Chart.yaml appVersion": String(chart.appVersion),
    // An empty tag runs the chart's appVersion; a pinned one must be this release's.
    "the chart's default image tag": values.image.tag || String(chart.appVersion),
    "CHANGELOG.md's first version heading": changelog,
  };
}

/** The one version, or an error naming each place that disagrees. */
export function releaseVersion(): string {
  const versions = releaseVersions();
  const expected = versions["package.json version"]!;
  const wrong = Object.entries(versions).filter(([, v]) => v !== expected);
  if (wrong.length > 0)
    throw new Error(`versions disagree with package.json's ${expected}: ${wrong.map(([k, v]) => `${k} is ${String(v)}`).join("; ")}`);
  if (!/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/.test(expected)) throw new Error(`${expected} is not a semantic version`);
  return expected;
}

if (process.argv[1] === import.meta.filename) console.log(releaseVersion());
