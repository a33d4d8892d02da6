// The operator's side effects on the API server, in one place: reads,
// server-side apply under one field manager, and status through the status
// subresource. Raw JSON over our own small client (see access.ts).
import type * as k8s from "@kubernetes/client-node";
import { group, version } from "../../crds/schema.js";
import { fieldManager, type KubeObject } from "../domain/render.js";
import { ApiError, request, type ClusterAccess, type RawResponse } from "./access.js";
import type { Logger } from "../../lib/log.js";
import type { EventQueue } from "../events.js";
import type { ObjectRef, ReadCache } from "./read-cache.js";

export { ApiError };

export class Cluster {
  /** API writes made, for the metrics and the zero-writes-at-steady-state test. */
  writes = 0;
  /** API errors by HTTP status ("network" when there was none), for the metrics. */
  readonly apiErrors = new Map<string, number>();
  /** The same for the Event writes (postEvent), apart: Events throttled are not reconciles throttled. */
  readonly eventApiErrors = new Map<string, number>();
  /** The last writes, "Kind namespace/name", newest last. */
  readonly recentWrites: string[] = [];

  /** Answers reads by name from the controller's watches where it can (read-cache.ts). */
  reads: ReadCache | undefined;

  /** Where Events go (events.ts: the Controller's queue, off the reconcile's path); without it they are written at once. */
  events: EventQueue | undefined;

  /** Where what it passes over is told (at debug); without it, nowhere. */
  log: Logger | undefined;

  constructor(readonly access: ClusterAccess) {}

  /**
   * Server-side apply under our field manager; forced, because only objects
   * we own are ever applied. Sent as raw JSON: client-node's generic object
   * API re-serialises through typed models, which silently drops fields whose
   * model name differs from the wire name (NetworkPolicy's `from`).
   */
  async apply(object: KubeObject): Promise<void> {
    const { apiVersion, kind } = object;
    const { namespace, name } = object.metadata;
    const ref = { apiVersion, kind, namespace, name };
    this.record(`${kind} ${namespace}/${name}`);
    const before = this.reads?.written(ref);
    const path = `${objectPath(apiVersion, kind, namespace)}/${encodeURIComponent(name)}`;
    const { body } = await this.request("PATCH", `${path}?fieldManager=${fieldManager}&force=true`, object);
    this.answered(ref, before, body);
  }

  /**
   * The object as written, for the reads until the watch shows it: only a kind they keep (an answer of any
   * other kind is never parsed), and an answer that does not parse leaves them to the watch: the write
   * succeeded all the same.
   */
  private answered(ref: ObjectRef, before: string | undefined, body: string): void {
    if (!this.reads?.keeps(ref.apiVersion, ref.kind)) return;
    const answer = parseObject(body);
    if (answer) this.reads.applied(ref, before, answer);
    else this.log?.debug("a write's answer did not parse as an object; reads wait for the watch", ref);
  }

  /**
   * Creates an object that must be made exactly once (a generated credential):
   * POST, so a concurrent writer that created it first makes this fail with
   * 409 instead of being overwritten. The controller then reads and redoes.
   */
  async create(object: KubeObject): Promise<void> {
    const { apiVersion, kind } = object;
    const { namespace, name } = object.metadata;
    this.record(`${kind} ${namespace}/${name}`);
    const ref = { apiVersion, kind, namespace, name };
    const before = this.reads?.written(ref);
    const { body } = await this.request("POST", `${objectPath(apiVersion, kind, namespace)}?fieldManager=${fieldManager}`, object);
    this.answered(ref, before, body);
  }

  /**
   * Server-side apply on the condition that the object is still the version
   * read (its resourceVersion as a precondition: 409 Conflict otherwise).
   */
  async applyIfUnchanged(object: KubeObject, resourceVersion: string): Promise<void> {
    await this.apply({ ...object, metadata: { ...object.metadata, resourceVersion } });
  }

  /** Server-side apply of a custom resource's main object (our finalizer; never spec). */
  async applyObject(
    plural: string,
    object: { apiVersion: string; kind: string; metadata: { name: string; namespace: string } },
  ): Promise<void> {
    this.record(`${object.kind} ${object.metadata.namespace}/${object.metadata.name}`);
    const { namespace, name } = object.metadata;
    await this.request(
      "PATCH",
      `/apis/${object.apiVersion}/namespaces/${encodeURIComponent(namespace)}/${plural}/${encodeURIComponent(name)}?fieldManager=${fieldManager}&force=true`,
      object,
    );
  }

  /** With `resourceVersion`, only onto that version (409 otherwise; never creates an object that is gone). */
  async applyStatus(
    plural: string,
    kind: string,
    namespace: string,
    name: string,
    status: unknown,
    resourceVersion?: string,
  ): Promise<void> {
    this.record(`${kind}/status ${namespace}/${name}`);
    const body = {
      apiVersion: `${group}/${version}`,
      kind,
      metadata: { name, namespace, ...(resourceVersion ? { resourceVersion } : {}) },
      status,
    };
    await this.request(
      "PATCH",
      `/apis/${group}/${version}/namespaces/${encodeURIComponent(namespace)}/${plural}/${encodeURIComponent(name)}/status?fieldManager=${fieldManager}&force=true`,
      body,
    );
  }

  /**
   * Reads a namespaced object as the API server sends it (or as a watch holds it: without managedFields and
   * kubectl's last-applied copy); undefined on 404.
   */
  async read<T extends k8s.KubernetesObject>(apiVersion: string, kind: string, namespace: string, name: string): Promise<T | undefined> {
    const ref = { apiVersion, kind, namespace, name };
    const cached = this.reads?.lookup(ref);
    if (cached) return cached as T;
    const { status, body } = await this.request(
      "GET",
      `${objectPath(apiVersion, kind, namespace)}/${encodeURIComponent(name)}`,
      undefined,
      [404],
    );
    const object = status === 404 ? undefined : (JSON.parse(body) as T);
    this.reads?.remember(ref, object);
    return object;
  }

  private record(what: string): void {
    this.writes++;
    this.recentWrites.push(what);
    if (this.recentWrites.length > 50) this.recentWrites.shift();
  }

  /**
   * Creates (POST) or replaces (PUT, with the resourceVersion read: optimistic
   * concurrency) an object. Used for the leader Lease only, whose renewals are
   * not counted as reconcile writes.
   */
  async write(
    method: "POST" | "PUT",
    path: string,
    body: unknown,
    accept: number[] = [],
    timeoutMs?: number,
  ): Promise<{ status: number; body: string }> {
    return this.request(method, path, body, accept, timeoutMs);
  }

  /** Writes an Event (events.ts), its errors counted in eventApiErrors. */
  async postEvent(namespace: string, event: unknown, accept: number[] = []): Promise<void> {
    await this.request("POST", `/api/v1/namespaces/${encodeURIComponent(namespace)}/events`, event, accept, undefined, this.eventApiErrors);
  }

  async get(path: string, accept: number[] = [], timeoutMs?: number): Promise<{ status: number; body: string }> {
    return this.request("GET", path, undefined, accept, timeoutMs);
  }

  private async request(
    method: "GET" | "PATCH" | "POST" | "PUT",
    path: string,
    body?: unknown,
    accept: number[] = [],
    timeoutMs?: number,
    errors = this.apiErrors,
  ): Promise<{ status: number; body: string }> {
    const countError = (code: string) => errors.set(code, (errors.get(code) ?? 0) + 1);
    let result: RawResponse;
    try {
      result = await request(this.access, method, path, body === undefined ? undefined : JSON.stringify(body), timeoutMs);
    } catch (error) {
      countError("network");
      throw error;
    }
    if (result.status >= 300 && !accept.includes(result.status)) {
      countError(String(result.status));
      throw new ApiError(result.status, `${method} ${path.split("?")[0]}`, result.body, result.retryAfter);
    }
    return result;
  }
}

/** A JSON object from the API server, or undefined (not JSON, or not an object). */
function parseObject(body: string): k8s.KubernetesObject | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return undefined;
  }
  return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed) ? parsed : undefined;
}

function objectPath(apiVersion: string, kind: string, namespace: string): string {
  const base = apiVersion === "v1" ? "/api/v1" : `/apis/${apiVersion}`;
  return `${base}/namespaces/${encodeURIComponent(namespace)}/${plural(kind)}`;
}

const plurals: Record<string, string> = {
  Secret: "secrets",
  Service: "services",
  Deployment: "deployments",
  NetworkPolicy: "networkpolicies",
  PodDisruptionBudget: "poddisruptionbudgets",
};

function plural(kind: string): string {
  const name = plurals[kind];
  if (!name) throw new Error(`no plural known for kind ${kind}`);
  return name;
}

/** Whether the object is controlled by the owner with this uid. */
export function ownedBy(object: k8s.KubernetesObject | undefined, uid: string): boolean {
  return Boolean(object?.metadata?.ownerReferences?.some((ref) => ref.uid === uid && ref.controller));
}
