// Informers that do not die: list, then watch from the list's
// resourceVersion; a watch the server ends or a broken connection is resumed
// where it was (with backoff); a 410 Gone or a refused request relists and
// reports every difference, so nothing is missed. Objects are cached without their
// managedFields and kubectl's last-applied copy (most of their size; nothing
// here reads them). Every list is paginated (limit/continue, as client-go's
// reflector does), so no single
// response holds a whole cluster's worth of objects; with `metadataOnly` the
// API server sends, and the cache keeps, only the objects' metadata.
import type * as k8s from "@kubernetes/client-node";
import type { Logger } from "../../lib/log.js";
import { acceptJson, acceptMetadataList, acceptMetadataWatch, ApiError, request, watchStream, type ClusterAccess } from "./access.js";

export type InformerEvent = "add" | "update" | "delete";

export interface SupervisedInformer<T extends k8s.KubernetesObject> {
  list(): readonly T[];
  get(name: string, namespace?: string): T | undefined;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** List requests made (pages, over every relist): how a test sees that lists are paginated. */
  listRequests(): number;
}

export interface InformerOptions<T extends k8s.KubernetesObject = k8s.KubernetesObject> {
  /** Told of every add, update and delete, after the cache holds it. */
  onChange: (object: T, event: InformerEvent) => void;
  log: Logger;
  labelSelector?: string;
  /** Told whenever the informer lists again, and why. */
  onRelist?: (reason: RelistReason) => void;
  /** Objects per list page (client-go's default: 500). */
  pageSize?: number;
  /**
   * Ask for and keep metadata only (PartialObjectMetadata), and of it only the name, namespace, uid,
   * resourceVersion and the labels `keepLabel` accepts (all without it). Never annotations: `kubectl apply`
   * keeps a whole copy of the object, a Secret's data included, in kubectl.kubernetes.io/last-applied-configuration.
   */
  metadataOnly?: boolean;
  keepLabel?: (key: string) => boolean;
  /** A field selector, e.g. metadata.name=<name>: one object, which RBAC can grant by resourceName. */
  fieldSelector?: string;
  /**
   * What is wrong with an object the server sent (empty: nothing). One with problems is kept out of the
   * cache, as if it were deleted (its earlier version too), and handed to `onInvalid` instead: the
   * informer's users then only ever see objects of the shape their type promises.
   */
  check?: (object: T) => readonly string[];
  onInvalid?: (object: T, problems: readonly string[]) => void;
  /** Applied to each object the server sends, after the fields above are dropped and before it is cached or told (e.g. StringPool.intern). */
  transform?: (object: T) => T;
}

export const defaultPageSize = 500;

const lastApplied = "kubectl.kubernetes.io/last-applied-configuration";

/** Why an informer listed again: its resourceVersion expired (410 Gone). A watch that fails otherwise resumes where it was. */
export type RelistReason = "Expired";

export function supervisedInformer<T extends k8s.KubernetesObject>(
  access: ClusterAccess,
  path: string,
  options: InformerOptions<T>,
): SupervisedInformer<T> {
  const { onChange, log, labelSelector, onRelist } = options;
  const store = new Map<string, T>();
  const pageSize = options.pageSize ?? defaultPageSize;
  const metadataOnly = options.metadataOnly === true;
  const keyOf = (o: k8s.KubernetesObject) => `${o.metadata?.namespace ?? ""}/${o.metadata?.name ?? ""}`;
  const keepLabel = options.keepLabel ?? (() => true);
  const { check, onInvalid, transform } = options;
  const problemsOf = (object: T): readonly string[] => check?.(object) ?? [];
  const strip = (o: T): T => {
    if (o.metadata?.managedFields) delete o.metadata.managedFields;
    // A client-side `kubectl apply` (Argo CD's default, Flux before SSA) keeps a whole copy of the object in
    // an annotation: nothing here reads it, and it doubles what every cached object costs.
    if (o.metadata?.annotations?.[lastApplied] !== undefined) delete o.metadata.annotations[lastApplied];
    if (!metadataOnly) return transform ? transform(o) : o;
    // Whatever else the server sent, a metadata cache keeps only what identifies the object and its version.
    const { name, namespace, uid, resourceVersion, labels } = o.metadata ?? {};
    const kept = labels ? Object.fromEntries(Object.entries(labels).filter(([key]) => keepLabel(key))) : {};
    const metadata = {
      apiVersion: o.apiVersion,
      kind: o.kind,
      metadata: { name, namespace, uid, resourceVersion, ...(Object.keys(kept).length > 0 ? { labels: kept } : {}) },
    } as T;
    return transform ? transform(metadata) : metadata;
  };
  let listRequests = 0;
  let resourceVersion = "";
  let stopped = false;
  let failures = 0;
  let abort: AbortController | undefined;
  let items: readonly T[] | undefined;

  /** Every page of a list, at one resourceVersion; an expired continue token starts the list again. */
  const listAll = async (): Promise<{ items: Map<string, T>; invalid: [T, readonly string[]][]; resourceVersion: string }> => {
    const items = new Map<string, T>();
    const invalid: [T, readonly string[]][] = [];
    let next = "";
    for (;;) {
      const query = new URLSearchParams({ limit: String(pageSize) });
      if (labelSelector) query.set("labelSelector", labelSelector);
      if (options.fieldSelector) query.set("fieldSelector", options.fieldSelector);
      if (next) query.set("continue", next);
      listRequests++;
      const response = await request(
        access,
        "GET",
        `${path}?${query.toString()}`,
        undefined,
        undefined,
        metadataOnly ? acceptMetadataList : acceptJson,
      );
      if (response.status === 410 && next) {
        // The snapshot the pages were read from was compacted away: read all of it again, at a new one.
        items.clear();
        invalid.length = 0;
        next = "";
        onRelist?.("Expired");
        continue;
      }
      if (response.status !== 200) throw new ApiError(response.status, `LIST ${path}`, response.body);
      const page = JSON.parse(response.body) as { metadata?: { resourceVersion?: string; continue?: string }; items?: T[] | null };
      // An empty PartialObjectMetadataList comes with "items": null.
      for (const item of page.items ?? []) {
        const object = strip(item);
        const problems = problemsOf(object);
        if (problems.length === 0) items.set(keyOf(object), object);
        else invalid.push([object, problems]);
      }
      next = page.metadata?.continue ?? "";
      if (!next) return { items, invalid, resourceVersion: page.metadata?.resourceVersion ?? "" };
    }
  };

  const relist = async () => {
    const list = await listAll();
    for (const [key, item] of list.items) {
      const previous = store.get(key);
      store.set(key, item);
      items = undefined;
      if (!previous) onChange(item, "add");
      else if (previous.metadata?.resourceVersion !== item.metadata?.resourceVersion) onChange(item, "update");
    }
    for (const [key, previous] of store) {
      if (list.items.has(key)) continue;
      store.delete(key);
      items = undefined;
      onChange(previous, "delete");
    }
    // Told after the cache has dropped them, so a user sees the invalid version last.
    for (const [object, problems] of list.invalid) onInvalid?.(object, problems);
    resourceVersion = list.resourceVersion;
  };

  const watchOnce = async () => {
    abort = new AbortController();
    const query = new URLSearchParams({
      watch: "1",
      resourceVersion,
      allowWatchBookmarks: "true",
      timeoutSeconds: String(240 + Math.floor(Math.random() * 120)),
    });
    if (labelSelector) query.set("labelSelector", labelSelector);
    if (options.fieldSelector) query.set("fieldSelector", options.fieldSelector);
    let gone = false;
    const current = abort;
    await watchStream(
      access,
      `${path}?${query.toString()}`,
      (event) => {
        const object = event.object as T & { code?: number };
        if (event.type === "BOOKMARK") {
          resourceVersion = object.metadata?.resourceVersion ?? resourceVersion;
          return;
        }
        if (event.type === "ERROR") {
          // 410 Gone (or another error): the resourceVersion is no good; relist.
          gone = true;
          current.abort();
          return;
        }
        const kept = strip(object);
        resourceVersion = kept.metadata?.resourceVersion ?? resourceVersion;
        const key = keyOf(kept);
        items = undefined;
        if (event.type === "DELETED") {
          const previous = store.get(key);
          store.delete(key);
          // One kept out as invalid was never reported to the users: its deletion is not either.
          if (problemsOf(kept).length === 0) onChange(kept, "delete");
          else if (previous) onChange(previous, "delete");
          return;
        }
        const problems = problemsOf(kept);
        if (problems.length > 0) {
          const previous = store.get(key);
          store.delete(key);
          if (previous) onChange(previous, "delete");
          onInvalid?.(kept, problems);
        } else {
          const existed = store.has(key);
          store.set(key, kept);
          onChange(kept, event.type === "ADDED" && !existed ? "add" : "update");
        }
      },
      current.signal,
      metadataOnly ? acceptMetadataWatch : acceptJson,
    );
    if (gone) {
      resourceVersion = "";
      onRelist?.("Expired");
      log.info("watch expired (410 Gone), relisting", { path });
    }
  };

  const run = async () => {
    while (!stopped) {
      try {
        if (!resourceVersion) await relist();
        await watchOnce();
        failures = 0;
      } catch (error) {
        if (stopped) return;
        failures++;
        // Only a resourceVersion the server no longer has (410 Gone) relists.
        // Anything else resumes where it was, as client-go's reflector does: a
        // broken connection, and an API server that is starting again (429
        // "storage is (re)initializing", 403 until its RBAC cache has synced,
        // 5xx) — every informer relisting at once is what a recovering API
        // server needs least, and a resume that is too old is answered with
        // 410 and relists then. A list that failed is simply tried again.
        const expired = error instanceof ApiError && error.code === 410 && resourceVersion !== "";
        if (expired) {
          resourceVersion = "";
          onRelist?.("Expired");
        }
        const delay = Math.min(200 * 2 ** failures, 30_000);
        const doing = expired ? "relisting" : resourceVersion ? "resuming" : "listing again";
        log.warn(`watch failed, ${doing}`, { path, error: error instanceof Error ? error.message : String(error), retryInMs: delay });
        await new Promise((resolve) => setTimeout(resolve, delay).unref());
      }
    }
  };

  return {
    list: () => (items ??= [...store.values()]),
    get: (name, namespace) => store.get(`${namespace ?? ""}/${name}`),
    listRequests: () => listRequests,
    start: async () => {
      // The first list may race a freshly installed CRD (429 while its watch cache starts).
      for (;;) {
        try {
          await relist();
          break;
        } catch (error) {
          if (stopped) return;
          failures++;
          log.warn("initial list failed, retrying", { path, error: error instanceof Error ? error.message : String(error) });
          await new Promise((resolve) => setTimeout(resolve, Math.min(200 * 2 ** failures, 5_000)));
        }
      }
      failures = 0;
      void run();
    },
    stop: () => {
      stopped = true;
      abort?.abort();
      return Promise.resolve();
    },
  };
}

/** Where a kind is listed: its API prefix ("/api/v1", "/apis/apps/v1") and its plural. */
export interface Resource {
  prefix: string;
  plural: string;
}

/**
 * One informer over every namespace, or (the namespace-scoped mode: RBAC per
 * namespace, no cluster-wide list) one per watched namespace, read as one.
 */
export function scopedInformer<T extends k8s.KubernetesObject>(
  access: ClusterAccess,
  resource: Resource,
  options: InformerOptions<T> & { namespaces?: readonly string[] | undefined },
): SupervisedInformer<T> {
  const { namespaces, ...rest } = options;
  if (!namespaces) return supervisedInformer(access, `${resource.prefix}/${resource.plural}`, rest);
  let items: readonly T[] | undefined;
  const changed = (object: T, event: InformerEvent) => {
    items = undefined;
    options.onChange(object, event);
  };
  const each = new Map(
    namespaces.map((namespace) => [
      namespace,
      supervisedInformer(access, `${resource.prefix}/namespaces/${encodeURIComponent(namespace)}/${resource.plural}`, {
        ...rest,
        onChange: changed,
      }),
    ]),
  );
  const all = [...each.values()];
  return {
    list: () => (items ??= all.flatMap((informer) => informer.list())),
    get: (name, namespace) => (namespace === undefined ? undefined : each.get(namespace)?.get(name, namespace)),
    start: async () => {
      await Promise.all(all.map((informer) => informer.start()));
    },
    stop: async () => {
      await Promise.all(all.map((informer) => informer.stop()));
    },
    listRequests: () => all.reduce((sum, informer) => sum + informer.listRequests(), 0),
  };
}
