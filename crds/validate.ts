// Runtime validation at the operator's boundary: every SmtpDomain and
// SupportAddress the API server sends is checked against the TypeBox schema
// its CRD is generated from (crds/schema.ts), so the operator acts only on
// objects of the shape its types promise. The API server checks the same schema
// on write, but only the CRD installed in the cluster: one applied by hand from
// another version, a conversion that leaves a field out, or an object stored
// before a field became required reaches the operator unchecked otherwise.
//
// Checked here: types, required fields, enums, patterns, lengths and ranges.
// Not checked: the CEL rules (x-kubernetes-validations), which only the API
// server evaluates. Compiled once per kind (a check is about a microsecond).
import { Type, type TSchema } from "@sinclair/typebox";
import { TypeCompiler, type TypeCheck } from "@sinclair/typebox/compiler";
import "../lib/formats.js";
import { apiVersion, SmtpDomainSpec, SmtpDomainStatus, SupportAddressSpec, SupportAddressStatus } from "./schema.js";

const objectOf = (kind: string, spec: TSchema, status: TSchema) =>
  Type.Object({
    apiVersion: Type.Literal(apiVersion),
    kind: Type.Literal(kind),
    // Whatever else metadata holds is the API server's business.
    metadata: Type.Object({ name: Type.String({ minLength: 1 }), namespace: Type.String({ minLength: 1 }) }),
    spec,
    status: Type.Optional(status),
  });

const checks: Record<"SmtpDomain" | "SupportAddress", TypeCheck<TSchema>> = {
  SmtpDomain: TypeCompiler.Compile(objectOf("SmtpDomain", SmtpDomainSpec, SmtpDomainStatus)),
  SupportAddress: TypeCompiler.Compile(objectOf("SupportAddress", SupportAddressSpec, SupportAddressStatus)),
};

/** At most this many problems are named: enough to act on, short enough for a condition message. */
const namedProblems = 5;

/**
 * What is wrong with `object` as a `kind`, each as "field.path: what" (the first few, one per field);
 * empty when it is well formed.
 */
export function objectProblems(kind: "SmtpDomain" | "SupportAddress", object: unknown): string[] {
  const check = checks[kind];
  if (check.Check(object)) return [];
  const problems = new Map<string, string>();
  for (const error of check.Errors(object)) {
    const field = error.path.split("/").filter(Boolean).join(".") || "(the object)";
    if (!problems.has(field)) problems.set(field, `${field}: ${error.message}`);
    if (problems.size === namedProblems) break;
  }
  return [...problems.values()];
}
