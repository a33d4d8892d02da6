// The findings npm run check:manifests accepts are the ones docs/security.md explains, each with the same reason.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { accepted } from "../../hack/manifests/accepted.js";

test("every accepted manifest finding is listed in docs/security.md with its reason, and nothing else is", () => {
  const doc = readFileSync("docs/security.md", "utf8");
  const section = doc.slice(doc.indexOf("## Manifests, checked by tools"), doc.indexOf("## Not in scope"));
  const listed = [...section.matchAll(/^\| (kube-score|checkov) \| `([^`]+)` \| (defaults|production|operator) \| (.+) \|$/gm)].map(
    (m) => `${m[1]} ${m[2]} ${m[3]} ${m[4]}`,
  );
  assert.deepEqual(listed.sort(), accepted.map((a) => `${a.tool} ${a.check} ${a.render} ${a.reason}`).sort());
});
