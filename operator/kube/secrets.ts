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
// Of a named Secret only the keys the operator reads are kept, each up to a
// bound: a tenant naming a 1 MB Secret (from an outbound password reference,
// say) makes the operator hold a password's bytes, not the Secret's. A value
// over its bound is refused (refusedKeys), so the reader can say which key of
// which Secret, never what it holds.
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

interface WantedSecret extends SecretName {
  dataKeys: WantedKeys;
  signature: string;
}

/** The keys of a Secret the operator reads, each with the most bytes (decoded) it keeps of it. */
export type WantedKeys = ReadonlyMap<string, number>;

/** A password, token or private key larger than this is no password, token or key: refused. */
export const maxSecretValueBytes = 64 * 1024;
/** A CA file may be a whole bundle of roots (Mozilla's is about 200 KiB). */
export const maxCaBundleBytes = 1024 * 1024;

// The keys a held Secret's value was refused for (too large), by the held object itself.
const refused = new WeakMap<k8s.V1Secret, readonly string[]>();

/** Keys of a Secret from `SecretCache.get` left out for being larger than their bound. */
export function refusedKeys(secret: k8s.V1Secret | undefined): readonly string[] {
  return (secret && refused.get(secret)) ?? [];
}

/** The message for a value refused for its size: names the Secret and the key, never the content. */
export function tooLargeMessage(secretName: string, key: string, bound = maxSecretValueBytes): string {
  return `Secret ${secretName}: the value of key ${key} is larger than ${bound / 1024} KiB and is not read; store only the value itself there`;
}

const keyOf = (namespace: string, name: string) => `${namespace}/${name}`;
const parse = (key: string): SecretName => {
  const slash = key.indexOf("/");
  return { key, namespace: key.slice(0, slash), name: key.slice(slash + 1) };
};

export class SecretCache {
  private readonly metadata: SupervisedInformer<k8s.KubernetesObject>;
  /** The named Secrets, by "namespace/name": their metadata and the keys read of them. */
  private readonly held = new Map<string, k8s.V1Secret>();
  /** Which keys (and bounds) each held Secret was read for: another set reads it again. */
  private readonly heldFor = new Map<string, string>();
  private readonly reading = new Map<string, Promise<void>>();
  /** What `want` asked for, by "namespace/name". */
  private readonly wanted = new Map<string, WantedSecret>();
  /** Keys to look at again at the next sync: wished for or not any more, or their metadata moved. */
  private readonly dirty = new Set<string>();
  /** Keys `sync` has looked at since start (the tests' measure of its work). */
  examined = 0;
  /** Reads sent and not yet answered, and the reads waiting for one of them to end (see maxReadsInFlight). */
  private readsInFlight = 0;
  private readonly readsWaiting: (() => void)[] = [];

  constructor(
    private readonly access: ClusterAccess,
    options: SecretCacheOptions,
  ) {
    const { namespaces, log, onChange, onRelist } = options;
    const resource = { prefix: "/api/v1", plural: "secrets" };
    const paging = options.pageSize ? { pageSize: options.pageSize } : {};
    // Of the labels only those the controller reads (its own, and which domain a Secret is for).
    const keepLabel = (key: string) => key in managedByLabel || key.startsWith("smtpconnector.dev/");
    const changed = (secret: k8s.KubernetesObject, event: InformerEvent) => {
      const key = keyOf(secret.metadata?.namespace ?? "", secret.metadata?.name ?? "");
      if (this.wanted.has(key) || this.held.has(key)) this.dirty.add(key);
      onChange(secret, event);
    };
    this.metadata = scopedInformer(access, resource, {
      namespaces,
      onChange: changed,
      log,
      onRelist,
      ...paging,
      metadataOnly: true,
      keepLabel,
    });
  }

  async start(): Promise<void> {
    await this.metadata.start();
  }

  async stop(): Promise<void> {
    await this.metadata.stop();
  }

  /** The Secret's resourceVersion as the metadata watch sees it now; undefined when it sees no such Secret. */
  resourceVersion(namespace: string, name: string): string | undefined {
    return this.metadata.get(name, namespace)?.metadata?.resourceVersion;
  }

  /** A named Secret as read by `hold`; undefined for any other. */
  get(name: string, namespace: string | undefined): k8s.V1Secret | undefined {
    if (namespace === undefined) return undefined;
    return this.held.get(keyOf(namespace, name));
  }

  /**
   * Wants this Secret ("namespace/name") held, of it only the keys given (undefined: no longer wanted). Takes
   * effect at the next `sync()`.
   */
  want(key: string, dataKeys: WantedKeys | undefined): void {
    if (dataKeys === undefined) this.wanted.delete(key);
    else this.wanted.set(key, { ...parse(key), dataKeys, signature: signatureOf(dataKeys) });
    this.dirty.add(key);
  }

  /**
   * Makes the cache hold exactly the wanted Secrets, as they are now (per the metadata watch): reads the ones
   * it lacks, that changed or that are wanted for other keys, drops the ones no longer wanted or gone. Looks
   * only at what changed since (a wish, a metadata event) and at reads still in flight, not at every Secret
   * wanted: a reconcile runs it first, and at 10,000 addresses walking them all each time was most of a
   * reconcile's work. Resolves to the namespaces in which a held Secret changed (was read, dropped or found gone).
   */
  async sync(): Promise<ReadonlySet<string>> {
    const changed = new Set<string>();
    // Reads in flight are looked at too: a caller must not go on before a read another one started.
    const keys = new Set([...this.dirty, ...this.reading.keys()]);
    this.dirty.clear();
    this.examined += keys.size;
    const behind = (secret: WantedSecret) => {
      const current = this.metadata.get(secret.name, secret.namespace);
      const held = this.held.get(secret.key);
      return (
        current !== undefined &&
        (held?.metadata?.resourceVersion !== current.metadata?.resourceVersion || this.heldFor.get(secret.key) !== secret.signature)
      );
    };
    const reads: Promise<void>[] = [];
    const looked: WantedSecret[] = [];
    for (const key of keys) {
      const secret = this.wanted.get(key);
      if (!secret) {
        if (this.forget(key)) changed.add(parse(key).namespace);
        continue;
      }
      if (!this.metadata.get(secret.name, secret.namespace)) {
        // It does not exist.
        if (this.forget(key)) changed.add(secret.namespace);
        continue;
      }
      looked.push(secret);
      if (!behind(secret)) continue;
      changed.add(secret.namespace);
      reads.push(this.read(secret));
    }
    await Promise.all(reads);
    // A read joined while already in flight may have started before the change that brought us here: whatever
    // is still older than the metadata says is read again, afresh.
    const again = looked.filter((secret) => this.wanted.get(secret.key) === secret && behind(secret));
    for (const secret of again) changed.add(secret.namespace);
    await Promise.all(again.map((secret) => this.read(secret, false)));
    return changed;
  }

  /**
   * What is cached, for the metrics and the tests: the Secrets held (with the
   * keys read of them), the bytes of their values held, and how many are known
   * by metadata only.
   */
  census(): { full: string[]; valueBytes: number; metadataOnly: number } {
    let valueBytes = 0;
    for (const secret of this.held.values()) for (const value of Object.values(secret.data ?? {})) valueBytes += value.length;
    return { full: [...this.held.keys()], valueBytes, metadataOnly: this.metadata.list().length };
  }

  /** The metadata-only cache itself (the tests look at what it keeps). */
  metadataObjects(): readonly k8s.KubernetesObject[] {
    return this.metadata.list();
  }

  /** List requests made (pages): the tests' proof that lists are paginated. */
  listRequests(): number {
    return this.metadata.listRequests();
  }

  private forget(key: string): boolean {
    this.heldFor.delete(key);
    return this.held.delete(key);
  }

  private read({ key, namespace, name, dataKeys, signature }: WantedSecret, join = true): Promise<void> {
    const inFlight = this.reading.get(key);
    if (inFlight && join) return inFlight;
    const reading = (async () => {
      await this.readSlot();
      try {
        const response = await request(
          this.access,
          "GET",
          `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets/${encodeURIComponent(name)}`,
        );
        if (response.status === 404) {
          this.forget(key);
          return;
        }
        if (response.status !== 200) throw new ApiError(response.status, `GET secret ${key}`, response.body);
        const kept = keep(JSON.parse(response.body) as k8s.V1Secret, dataKeys);
        this.held.set(key, kept);
        this.heldFor.set(key, signature);
      } catch (error) {
        // Looked at again at the next sync (the reconcile that waited on it fails and is retried).
        this.dirty.add(key);
        throw error;
      } finally {
        this.reading.delete(key);
        // The slot goes to the next read waiting, if any.
        const next = this.readsWaiting.shift();
        if (next) next();
        else this.readsInFlight--;
      }
    })();
    this.reading.set(key, reading);
    return reading;
  }

  /** Waits until fewer than maxReadsInFlight reads are sent and not answered; the read then holds a slot. */
  private async readSlot(): Promise<void> {
    if (this.readsInFlight < maxReadsInFlight) {
      this.readsInFlight++;
      return;
    }
    await new Promise<void>((resolve) => this.readsWaiting.push(resolve));
  }
}

/**
 * Secrets read by name at once, at most. A fresh start wants every Secret a domain or address names (some 1,200
 * at 10,000 addresses) at its first sync: read all at once, each had a TLS connection of its own (the agent keeps
 * them open: RSS 277 MB after a restart at that size, of it 106 MB V8 heap) and the API server's flow control
 * answered 429. A read waiting for a slot is already in `reading`, so a concurrent sync still waits for it.
 */
const maxReadsInFlight = 16;

const signatureOf = (dataKeys: WantedKeys) => JSON.stringify([...dataKeys].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

/**
 * Of a Secret as read, what the readers use: the metadata that says whose it is
 * and which version (not its annotations: kubectl's last-applied-configuration
 * holds a whole copy of the data), and the wanted keys' values within bounds.
 */
function keep(secret: k8s.V1Secret, dataKeys: WantedKeys): k8s.V1Secret {
  const { name, namespace, uid, resourceVersion, creationTimestamp, labels, ownerReferences } = secret.metadata ?? {};
  const data: Record<string, string> = {};
  const tooLarge: string[] = [];
  for (const [dataKey, bound] of dataKeys) {
    const value = secret.data?.[dataKey];
    if (value === undefined) continue;
    if (Buffer.byteLength(value, "base64") > bound) tooLarge.push(dataKey);
    else data[dataKey] = value;
  }
  const kept: k8s.V1Secret = {
    apiVersion: "v1",
    kind: "Secret",
    metadata: {
      name,
      namespace,
      uid,
      resourceVersion,
      creationTimestamp,
      ...(labels ? { labels } : {}),
      ...(ownerReferences ? { ownerReferences } : {}),
    },
    ...(secret.type ? { type: secret.type } : {}),
    data,
  };
  if (tooLarge.length > 0) refused.set(kept, tooLarge);
  return kept;
}
