// The Secrets the operator reads, held so that its memory does not grow with
// everyone else's Secrets (Helm keeps every release in one; a cluster may
// have thousands of ~1 MB Secrets). Two parts:
// - every Secret's metadata only (PartialObjectMetadata: names, labels,
//   resourceVersions): what tells the controller that a Secret it cares
//   about was made, changed or deleted;
// - the Secrets a domain or address names, its own among them (the relay's
//   TLS Secret, the control token, the submission credential, generated DKIM
//   keys; a next hop's or an address's credentials): read by name, read again
//   only when the metadata says their resourceVersion moved, and dropped when
//   nothing names them any more.
// Nothing is held in full for carrying a label: anyone who may create a Secret
// can set the operator's managed-by label, and a label-selected cache of "ours"
// let any tenant make the operator hold their Secrets whole. A name is held only
// while an SmtpDomain or SupportAddress in the same namespace names it.
import type * as k8s from "@kubernetes/client-node";
import type { Logger } from "../../lib/log.js";
import { managedByLabel } from "../domain/render.js";
import { scopedInformer, type InformerEvent, type RelistReason, type SupervisedInformer } from "./informer.js";
import { ApiError, request, type ClusterAccess } from "./access.js";

export interface SecretCacheOptions {
  /** The namespace-scoped mode's namespaces; undefined: all of them. */
  namespaces?: readonly string[];
  log: Logger;
  /** Any Secret made, changed or deleted, as metadata only (names, resourceVersion, the operator's labels). */
  onChange: (secret: k8s.KubernetesObject, event: InformerEvent) => void;
  onRelist?: (reason: RelistReason) => void;
  pageSize?: number;
}

interface SecretName {
  key: string;
  namespace: string;
  name: string;
}

const keyOf = (namespace: string, name: string) => `${namespace}/${name}`;
const parse = (key: string): SecretName => {
  const slash = key.indexOf("/");
  return { key, namespace: key.slice(0, slash), name: key.slice(slash + 1) };
};

export class SecretCache {
  private readonly metadata: SupervisedInformer<k8s.KubernetesObject>;
  /** The named Secrets, in full, by "namespace/name". */
  private readonly held = new Map<string, k8s.V1Secret>();
  private readonly reading = new Map<string, Promise<void>>();

  constructor(
    private readonly access: ClusterAccess,
    options: SecretCacheOptions,
  ) {
    const { namespaces, log, onChange, onRelist } = options;
    const resource = { prefix: "/api/v1", plural: "secrets" };
    const paging = options.pageSize ? { pageSize: options.pageSize } : {};
    // Of the labels only those the controller reads (its own, and which domain a Secret is for).
    const keepLabel = (key: string) => key in managedByLabel || key.startsWith("smtpconnector.dev/");
    this.metadata = scopedInformer(access, resource, { namespaces, onChange, log, onRelist, ...paging, metadataOnly: true, keepLabel });
  }

  async start(): Promise<void> {
    await this.metadata.start();
  }

  async stop(): Promise<void> {
    await this.metadata.stop();
  }

  /** A named Secret as read by `hold`; undefined for any other. */
  get(name: string, namespace: string | undefined): k8s.V1Secret | undefined {
    if (namespace === undefined) return undefined;
    return this.held.get(keyOf(namespace, name));
  }

  /**
   * Makes the cache hold exactly these Secrets ("namespace/name") as they are
   * now (per the metadata watch): reads the ones it lacks or that changed,
   * drops the ones no longer named or gone. True when anything changed.
   */
  async hold(keys: ReadonlySet<string>): Promise<boolean> {
    let changed = false;
    for (const key of this.held.keys()) {
      if (!keys.has(key)) {
        this.held.delete(key);
        changed = true;
      }
    }
    const wanted = [...keys].map(parse);
    const behind = (secret: SecretName) => {
      const current = this.metadata.get(secret.name, secret.namespace);
      const held = this.held.get(secret.key);
      return current !== undefined && held?.metadata?.resourceVersion !== current.metadata?.resourceVersion;
    };
    const reads: Promise<void>[] = [];
    for (const secret of wanted) {
      if (!this.metadata.get(secret.name, secret.namespace)) {
        // It does not exist.
        if (this.held.delete(secret.key)) changed = true;
        continue;
      }
      if (!behind(secret)) continue;
      changed = true;
      reads.push(this.read(secret));
    }
    await Promise.all(reads);
    // A read joined while already in flight may have started before the change that brought us here: whatever
    // is still older than the metadata says is read again, afresh.
    await Promise.all(wanted.filter((secret) => this.held.has(secret.key) && behind(secret)).map((secret) => this.read(secret, false)));
    return changed;
  }

  /** What is cached, for the metrics and the tests: Secrets held in full, and how many are known by metadata only. */
  census(): { full: string[]; metadataOnly: number } {
    return { full: [...this.held.keys()], metadataOnly: this.metadata.list().length };
  }

  /** The metadata-only cache itself (the tests look at what it keeps). */
  metadataObjects(): readonly k8s.KubernetesObject[] {
    return this.metadata.list();
  }

  /** List requests made (pages): the tests' proof that lists are paginated. */
  listRequests(): number {
    return this.metadata.listRequests();
  }

  private read({ key, namespace, name }: SecretName, join = true): Promise<void> {
    const inFlight = this.reading.get(key);
    if (inFlight && join) return inFlight;
    const reading = (async () => {
      try {
        const response = await request(this.access, "GET", `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets/${encodeURIComponent(name)}`);
        if (response.status === 404) {
          this.held.delete(key);
          return;
        }
        if (response.status !== 200) throw new ApiError(response.status, `GET secret ${key}`, response.body);
        const secret = JSON.parse(response.body) as k8s.V1Secret;
        delete secret.metadata?.managedFields;
        this.held.set(key, secret);
      } finally {
        this.reading.delete(key);
      }
    })();
    this.reading.set(key, reading);
    return reading;
  }
}
