// A kubeconfig user with `as`, `as-groups`, `as-uid` and `as-user-extra` (kubectl's impersonation
// fields), against the real API server: the admin may impersonate, and the server reports and
// authorizes the impersonated user, for requests and watches alike. Ignoring the fields would leave the
// operator acting with the admin's rights.
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { parse, stringify } from "yaml";
import { ApiError, clusterAccess, request, watchStream } from "../../operator/kube/access.js";
import { connect, selfSubjectReview } from "../support/kube.js";
import { tempDir } from "../support/mail.js";

interface KubeconfigDoc {
  users: { name: string; user: Record<string, unknown> }[];
}

describe("kubeconfig impersonation against the API server", () => {
  let admin: KubeconfigDoc & Record<string, unknown>;
  before(async () => {
    admin = parse(readFileSync((await connect()).kubeconfigPath, "utf8")) as KubeconfigDoc & Record<string, unknown>;
  });
  const impersonating = (fields: Record<string, unknown>) => {
    const file = join(tempDir("kube-as"), "kubeconfig");
    const [first] = admin.users;
    writeFileSync(file, stringify({ ...admin, users: [{ name: first!.name, user: { ...first!.user, ...fields } }] }));
    return clusterAccess(file);
  };

  test("the server sees the impersonated user, uid, groups and extra, and authorizes that user, not the admin", async () => {
    const access = impersonating({
      as: "system:serviceaccount:default:nobody",
      "as-uid": "uid-1",
      "as-groups": ["system:serviceaccounts", "smtpc:testers"],
      "as-user-extra": { "reason/why": ["impersonation test"] },
    });
    const userInfo = await selfSubjectReview(access);
    assert.equal(userInfo.username, "system:serviceaccount:default:nobody");
    assert.equal(userInfo.uid, "uid-1");
    assert.deepEqual(
      userInfo.groups?.filter((g) => g !== "system:authenticated"),
      ["system:serviceaccounts", "smtpc:testers"],
    );
    assert.deepEqual(userInfo.extra, { "reason/why": ["impersonation test"] });

    const list = await request(access, "GET", "/api/v1/secrets?limit=1");
    assert.equal(list.status, 403, list.body);
    assert.match(list.body, /system:serviceaccount:default:nobody/);
    await assert.rejects(
      watchStream(access, "/api/v1/secrets?watch=1&timeoutSeconds=1", () => undefined, new AbortController().signal),
      (error: unknown) => error instanceof ApiError && error.code === 403 && /system:serviceaccount:default:nobody/.test(error.body),
    );
  });
});
