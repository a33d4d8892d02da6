// The Secrets the operator reads, held so that its memory does not grow with
// everyone else's Secrets (Helm keeps every release in one; a cluster may
// have thousands of ~1 MB Secrets). Three parts:
// - its own Secrets (labelled app.kubernetes.io/managed-by=smtp-connector):
//   watched and cached in full;
// - every Secret's metadata only (PartialObjectMetadata: names, labels,
//   resourceVersions): what tells the controller that a Secret a domain or
//   address names was made, changed or deleted;
// - the Secrets a domain or address names (a TLS Secret, a next hop's or an
//   address's credentials): read by name, and read again only when the
//   metadata says their resourceVersion moved. Dropped when nothing names
//   them any more.
// A Secret of ours made before it carried the label is found the same way,
// by name (the controller names its own Secrets among the referenced ones).
import type * as k8s from "@kubernetes/client-node";
import type { Logger } from "../../lib/log.js";
import { managedByLabel } from "../domain/render.js";
import { scopedInformer, type InformerEvent, type RelistReason, type SupervisedInformer } from "./informer.js";
import { ApiError, request, type ClusterAccess } from "./access.js";

export interface SecretCacheOptions {
  /** The namespace-scoped mode's namespaces; undefined: all of them. */
  namespaces?: readonly string[];
  log: Logger;
  /** Any Secret made, changed or deleted: the object is the whole Secret when it is ours, else its metadata only. */
  onChange: (secret: k8s.KubernetesObject, event: InformerEvent) => void;
  onRelist?: (reason: RelistReason) => void;
  pageSize?: number;
}

const ownedSelector = Object.entries(managedByLabel).map(([key, value]) => `${key}=${value}`).join(",");
const isOurs = (object: k8s.KubernetesObject) => Object.entries(managedByLabel).every(([key, value]) => object.metadata?.labels?.[key] === value);
const keyOf = (namespace: string, name: string) => `${namespace}/${name}`;

export class SecretCache {
  private readonly owned: SupervisedInformer<k8s.V1Secret>;
  private readonly metadata: SupervisedInformer<k8s.KubernetesObject>;
  /** Referenced Secrets that are not ours, in full, by "namespace/name". */
  private readonly referenced = new Map<string, k8s.V1Secret>();
  private readonly reading = new Map<string, Promise<void>>();

  constructor(
    private readonly access: ClusterAccess,
    options: SecretCacheOptions,
  ) {
    const { namespaces, log, onChange, onRelist } = options;
    const resource = { prefix: "/api/v1", plural: "secrets" };
    const paging = options.pageSize ? { pageSize: options.pageSize } : {};
    this.owned = scopedInformer(access, resource, { namespaces, onChange, log, labelSelector: ownedSelector, onRelist, ...paging });
    // Ours are reported by the informer above, whole; the rest only as metadata.
    const othersChanged = (object: k8s.KubernetesObject, event: InformerEvent) => {
      if (!isOurs(object)) onChange(object, event);
    };
    // Of other teams' Secrets only the labels the controller reads (its own, and which domain a Secret is for).
    const keepLabel = (key: string) => key in managedByLabel || key.startsWith("smtpconnector.dev/");
    this.metadata = scopedInformer(access, resource, { namespaces, onChange: othersChanged, log, onRelist, ...paging, metadataOnly: true, keepLabel });
  }

  async start(): Promise<void> {
    await Promise.all([this.owned.start(), this.metadata.start()]);
  }

  async stop(): Promise<void> {
    await Promise.all([this.owned.stop(), this.metadata.stop()]);
  }

  /** A Secret as cached: ours, or a referenced one read by `hold`. */
  get(name: string, namespace: string | undefined): k8s.V1Secret | undefined {
    if (namespace === undefined) return undefined;
    return this.owned.get(name, namespace) ?? this.referenced.get(keyOf(namespace, name));
  }

  /**
   * Makes the cache hold exactly these referenced Secrets ("namespace/name")
   * as they are now (per the metadata watch): reads the ones it lacks or that
   * changed, drops the ones no longer named. True when anything changed.
   */
  async hold(keys: ReadonlySet<string>): Promise<boolean> {
    let changed = false;
    for (const key of this.referenced.keys()) {
      if (!keys.has(key)) {
        this.referenced.delete(key);
        changed = true;
      }
    }
    const reads: Promise<void>[] = [];
    for (const key of keys) {
      const slash = key.indexOf("/");
      const namespace = key.slice(0, slash);
      const name = key.slice(slash + 1);
      const held = this.referenced.get(key);
      const current = this.owned.get(name, namespace) ? undefined : this.metadata.get(name, namespace);
      if (!current) {
        // Ours (cached above), or it does not exist.
        if (held) changed = this.referenced.delete(key);
        continue;
      }
      if (held?.metadata?.resourceVersion === current.metadata?.resourceVersion) continue;
      changed = true;
      reads.push(this.read(key, namespace, name));
    }
    await Promise.all(reads);
    // A read joined while already in flight may have started before the change that brought us here: whatever
    // is still older than the metadata says is read again, afresh.
    const stale = [...keys].filter((key) => {
      const slash = key.indexOf("/");
      const current = this.metadata.get(key.slice(slash + 1), key.slice(0, slash));
      const held = this.referenced.get(key);
      return current !== undefined && held !== undefined && held.metadata?.resourceVersion !== current.metadata?.resourceVersion;
    });
    await Promise.all(stale.map((key) => this.read(key, key.slice(0, key.indexOf("/")), key.slice(key.indexOf("/") + 1), false)));
    return changed;
  }

  /** What is cached, for the metrics and the tests: Secrets held in full, and how many are known by metadata only. */
  census(): { full: string[]; metadataOnly: number } {
    const full = [...this.owned.list().map((s) => keyOf(s.metadata?.namespace ?? "", s.metadata?.name ?? "")), ...this.referenced.keys()];
    return { full, metadataOnly: this.metadata.list().length };
  }

  /** The metadata-only cache itself (the tests look at what it keeps). */
  metadataObjects(): readonly k8s.KubernetesObject[] {
    return this.metadata.list();
  }

  /** List requests made (pages): the tests' proof that lists are paginated. */
  listRequests(): number {
    return this.owned.listRequests() + this.metadata.listRequests();
  }

  private read(key: string, namespace: string, name: string, join = true): Promise<void> {
    const inFlight = this.reading.get(key);
    if (inFlight && join) return inFlight;
    const reading = (async () => {
      try {
        const response = await request(this.access, "GET", `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets/${encodeURIComponent(name)}`);
        if (response.status === 404) {
          this.referenced.delete(key);
          return;
        }
        if (response.status !== 200) throw new ApiError(response.status, `GET secret ${key}`, response.body);
        const secret = JSON.parse(response.body) as k8s.V1Secret;
        delete secret.metadata?.managedFields;
        this.referenced.set(key, secret);
      } finally {
        this.reading.delete(key);
      }
    })();
    this.reading.set(key, reading);
    return reading;
  }
}
