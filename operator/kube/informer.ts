// Informers that do not die. client-node 1.x stops an informer for good on
// any watch error but 410 Gone; this restarts it (a fresh list, then watch)
// with backoff, and reports every object again so nothing is missed.
import * as k8s from "@kubernetes/client-node";
import type { Logger } from "../../relay/ops/log.js";

export type InformerEvent = "add" | "update" | "delete";

export interface SupervisedInformer<T extends k8s.KubernetesObject> {
  list(): readonly T[];
  get(name: string, namespace?: string): T | undefined;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function supervisedInformer<T extends k8s.KubernetesObject>(
  config: k8s.KubeConfig,
  path: string,
  list: () => Promise<k8s.KubernetesListObject<T>>,
  onChange: (object: T, event: InformerEvent) => void,
  log: Logger,
  labelSelector?: string,
): SupervisedInformer<T> {
  const informer = k8s.makeInformer<T>(config, path, list, labelSelector);
  let stopped = false;
  let failures = 0;
  for (const event of ["add", "update", "delete"] as const) {
    informer.on(event, (object) => {
      failures = 0;
      // managedFields are most of an object's size and nothing here reads
      // them: dropped from the cached copy (the cache holds this reference).
      if (object.metadata?.managedFields) delete object.metadata.managedFields;
      onChange(object, event);
    });
  }
  const restart = (error: unknown) => {
    if (stopped) return;
    failures++;
    const delay = Math.min(200 * 2 ** failures, 30_000);
    log.warn("watch failed, restarting", { path, error: error instanceof Error ? error.message : String(error), retryInMs: delay });
    setTimeout(() => {
      if (stopped) return;
      informer.start().catch(restart);
    }, delay).unref();
  };
  informer.on("error", restart);
  return {
    list: () => informer.list(),
    get: (name, namespace) => informer.get(name, namespace),
    start: async () => {
      // The first list may race a freshly installed CRD (429 while its watch cache starts).
      for (;;) {
        try {
          await informer.start();
          return;
        } catch (error) {
          if (stopped) return;
          failures++;
          log.warn("initial list failed, retrying", { path, error: error instanceof Error ? error.message : String(error) });
          await new Promise((r) => setTimeout(r, Math.min(200 * 2 ** failures, 5_000)));
        }
      }
    },
    stop: async () => {
      stopped = true;
      await informer.stop();
    },
  };
}
