// One version number for every artifact of a release (docs/releasing.md).
import assert from "node:assert/strict";
import { test } from "node:test";
import { releaseVersion, releaseVersions } from "../../hack/release-versions.js";

test("package.json, package-lock.json, Chart.yaml (version, appVersion), the chart's image tag and CHANGELOG.md name one version", () => {
  const versions = releaseVersions();
  const expected = versions["package.json version"];
  for (const [where, version] of Object.entries(versions)) assert.equal(version, expected, where);
  assert.equal(releaseVersion(), expected);
});
