// Informers that do not die: list, then watch from the list's
// resourceVersion; a watch the server ends is resumed where it was; a 410
// Gone, an error or a broken connection relists (with backoff) and reports
// every difference, so nothing is missed. Objects are cached without their
// managedFields (most of their size; nothing here reads them).
import type * as k8s from "@kubernetes/client-node";
import type { Logger } from "../../relay/ops/log.js";
import { ApiError, request, watchStream, type ClusterAccess } from "./access.js";

export type InformerEvent = "add" | "update" | "delete";

export interface SupervisedInformer<T extends k8s.KubernetesObject> {
  list(): readonly T[];
  get(name: string, namespace?: string): T | undefined;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function supervisedInformer<T extends k8s.KubernetesObject>(
  access: ClusterAccess,
  path: string,
  onChange: (object: T, event: InformerEvent) => void,
  log: Logger,
  labelSelector?: string,
): SupervisedInformer<T> {
  const store = new Map<string, T>();
  const keyOf = (o: k8s.KubernetesObject) => `${o.metadata?.namespace ?? ""}/${o.metadata?.name ?? ""}`;
  const strip = (o: T) => {
    if (o.metadata?.managedFields) delete o.metadata.managedFields;
    return o;
  };
  let resourceVersion = "";
  let stopped = false;
  let failures = 0;
  let abort: AbortController | undefined;
  let items: readonly T[] | undefined;

  const relist = async () => {
    const query = labelSelector ? `?labelSelector=${encodeURIComponent(labelSelector)}` : "";
    const response = await request(access, "GET", `${path}${query}`);
    if (response.status !== 200) throw new ApiError(response.status, `LIST ${path}`, response.body);
    const list = JSON.parse(response.body) as { metadata?: { resourceVersion?: string }; items: T[] };
    const seen = new Set<string>();
    for (const item of list.items) {
      strip(item);
      const key = keyOf(item);
      seen.add(key);
      const previous = store.get(key);
      store.set(key, item);
      items = undefined;
      if (!previous) onChange(item, "add");
      else if (previous.metadata?.resourceVersion !== item.metadata?.resourceVersion) onChange(item, "update");
    }
    for (const [key, previous] of store) {
      if (seen.has(key)) continue;
      store.delete(key);
      items = undefined;
      onChange(previous, "delete");
    }
    resourceVersion = list.metadata?.resourceVersion ?? "";
  };

  const watchOnce = async () => {
    abort = new AbortController();
    const query = new URLSearchParams({ watch: "1", resourceVersion, allowWatchBookmarks: "true", timeoutSeconds: String(240 + Math.floor(Math.random() * 120)) });
    if (labelSelector) query.set("labelSelector", labelSelector);
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
        strip(object);
        resourceVersion = object.metadata?.resourceVersion ?? resourceVersion;
        const key = keyOf(object);
        items = undefined;
        if (event.type === "DELETED") {
          store.delete(key);
          onChange(object, "delete");
        } else {
          const existed = store.has(key);
          store.set(key, object);
          onChange(object, event.type === "ADDED" && !existed ? "add" : "update");
        }
      },
      current.signal,
    );
    if (gone) resourceVersion = "";
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
        resourceVersion = "";
        const delay = Math.min(200 * 2 ** failures, 30_000);
        log.warn("watch failed, relisting", { path, error: error instanceof Error ? error.message : String(error), retryInMs: delay });
        await new Promise((resolve) => setTimeout(resolve, delay).unref());
      }
    }
  };

  return {
    list: () => (items ??= [...store.values()]),
    get: (name, namespace) => store.get(`${namespace ?? ""}/${name}`),
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
