// Informers that do not die: list, then watch from the list's
// resourceVersion; a watch the server ends or a broken connection is resumed
// where it was (with backoff); a 410 Gone or a refused request relists and
// reports every difference, so nothing is missed. Objects are cached without their
// managedFields (most of their size; nothing here reads them).
import type * as k8s from "@kubernetes/client-node";
import type { Logger } from "../../lib/log.js";
import { ApiError, request, watchStream, type ClusterAccess } from "./access.js";

export type InformerEvent = "add" | "update" | "delete";

export interface SupervisedInformer<T extends k8s.KubernetesObject> {
  list(): readonly T[];
  get(name: string, namespace?: string): T | undefined;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Why an informer listed again: its resourceVersion expired (410 Gone), or the watch failed. */
export type RelistReason = "Expired" | "Error";

export function supervisedInformer<T extends k8s.KubernetesObject>(
  access: ClusterAccess,
  path: string,
  onChange: (object: T, event: InformerEvent) => void,
  log: Logger,
  labelSelector?: string,
  onRelist?: (reason: RelistReason) => void,
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
        // A broken connection (the API server restarting, a network blip)
        // resumes where it was, as client-go's reflector does: every informer
        // relisting at once is what a recovering API server needs least. A
        // refused request relists; an expired resourceVersion answers the
        // resume with 410 Gone, and that relists too.
        const refused = error instanceof ApiError;
        if (refused) {
          resourceVersion = "";
          onRelist?.(error.code === 410 ? "Expired" : "Error");
        }
        const delay = Math.min(200 * 2 ** failures, 30_000);
        log.warn(refused ? "watch refused, relisting" : "watch failed, resuming", { path, error: error instanceof Error ? error.message : String(error), retryInMs: delay });
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
