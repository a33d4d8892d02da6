// The operator's command line: --watch-namespaces (the namespace-scoped mode).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { helpText, parseFlags } from "../../operator/flags.js";

describe("operator flags", () => {
  test("--watch-namespaces: absent means every namespace; a list is trimmed and de-duplicated; a bad name is refused by name", () => {
    assert.equal(parseFlags([]).watchNamespaces, undefined);
    assert.equal(parseFlags(["--watch-namespaces", ""]).watchNamespaces, undefined);
    assert.deepEqual(parseFlags(["--watch-namespaces", "team-a, team-b,team-a"]).watchNamespaces, ["team-a", "team-b"]);
    assert.throws(() => parseFlags(["--watch-namespaces", "team-a,Team_B"]), /--watch-namespaces .*"Team_B"/);
    assert.match(helpText(), /--watch-namespaces a,b/);
  });
});
