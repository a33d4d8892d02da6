// Reads by name of the operator's own objects, answered from what its watches
// already hold, so that a steady state costs the API server nothing: each
// available domain is reconciled every 30 s (its relays' last-use reports),
// and every reconcile reads the relay's Deployment, Services, NetworkPolicy,
// config and TLS Secrets and each credential version's Secret. Measured before
// this (bench:operator, 100 domains with relays available): 20.5 GET/s.
// - Deployments, Services, NetworkPolicies and PodDisruptionBudgets: from the
//   label-selected informers the controller runs anyway. An object they lack
//   (not made yet, or someone else's without our labels: the plan must see it
//   to refuse taking it over) is read from the API server.
// - Secrets: the metadata watch sees every Secret but holds no data. The copy
//   last read by name is answered again while the watch still shows that same
//   resourceVersion, and only for Secrets that are the operator's own (its
//   label and an owner reference to a domain it knows in that namespace) and
//   at most a Secret's size: a tenant's Secret is never held whole here. The
//   answer to the operator's own write of one is held the same way: before,
//   each Secret it made or rewrote (the relay config on every address change)
//   was read again by the next round or reconcile (issue 22: a domain's GETs
//   converging 23 -> 20, bench:operator at 1,000 addresses).
import type * as k8s from "@kubernetes/client-node";

/** A namespaced object by its name, as the cache is asked about it. */
export interface ObjectRef {
  readonly apiVersion: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
}

export interface ReadCache {
  /** The object as cached (the caller's own copy), or undefined: read it from the API server. */
  lookup(ref: ObjectRef): k8s.KubernetesObject | undefined;
  /**
   * The operator writes this object (apply or create); what it returns is handed to `applied` with the
   * write's answer once the write succeeded.
   */
  written(ref: ObjectRef): string | undefined;
  /** The API server's answer to a write `written` announced (`before`: what `written` returned). */
  applied(ref: ObjectRef, before: string | undefined, object: k8s.KubernetesObject): void;
  /** Whether `applied` may keep a write's answer of this kind (a watched kind, or a Secret: only the operator's own). */
  keeps(apiVersion: string, kind: string): boolean;
  /** What the API server answered to a read by name (undefined: 404). */
  remember(ref: ObjectRef, object: k8s.KubernetesObject | undefined): void;
}

/** The key of a write's answer held (`writes`). */
const writeKey = ({ apiVersion, kind, namespace, name }: ObjectRef) => `${apiVersion}/${kind} ${namespace}/${name}`;

const isSecret = ({ apiVersion, kind }: Pick<ObjectRef, "apiVersion" | "kind">) => apiVersion === "v1" && kind === "Secret";

interface ObjectSource {
  get(name: string, namespace?: string): k8s.KubernetesObject | undefined;
}

export interface OwnObjectReadsOptions {
  /** The label-selected informers, by "apiVersion/Kind". */
  informers: ReadonlyMap<string, ObjectSource>;
  /** The resourceVersion of a Secret as the metadata watch sees it now; undefined when it sees none. */
  secretVersion: (namespace: string, name: string) => string | undefined;
  /**
   * Whether `secret` is a name the operator itself gives a Secret of the domain `domain` (with this uid) in
   * the namespace: its relay config, certificate and credential versions. A tenant can forge a label and an
   * owner reference, not make the operator hold other names through this cache. (The names: isOwnSecretName,
   * operator/domain/render.ts, beside the renderers that give them.)
   */
  isOwnSecret: (namespace: string, domain: string, uid: string, secret: string) => boolean;
  /** Labels every object the operator makes carries. */
  ownLabels: Readonly<Record<string, string>>;
}

/** The API server's own limit on an object (etcd's request size): anything larger is not ours. */
const maxHeldSecretBytes = 1536 * 1024;

export class OwnObjectReads implements ReadCache {
  private readonly secrets = new Map<string, k8s.V1Secret>();
  /**
   * What the operator last wrote of a watched object, by "apiVersion/Kind namespace/name", with the
   * resourceVersion the watch showed before the write: answered in place of the watch's copy while the watch
   * still shows that version. Without it the next reconcile, before the watch brought the write, saw the old
   * copy (a drift just repaired) and wrote the same object again, with a second DriftRepaired Event.
   */
  private readonly writes = new Map<string, { object: k8s.KubernetesObject; before: string }>();

  constructor(private readonly options: OwnObjectReadsOptions) {}

  lookup(ref: ObjectRef): k8s.KubernetesObject | undefined {
    const { apiVersion, kind, namespace, name } = ref;
    if (isSecret(ref)) {
      const key = `${namespace}/${name}`;
      const held = this.secrets.get(key);
      if (!held) return undefined;
      if (held.metadata?.resourceVersion !== this.options.secretVersion(namespace, name)) {
        this.secrets.delete(key);
        return undefined;
      }
      return structuredClone(held);
    }
    const cached = this.watched(ref);
    const key = writeKey(ref);
    const wrote = this.writes.get(key);
    if (wrote) {
      if (cached?.metadata?.resourceVersion === wrote.before) return structuredClone(wrote.object);
      this.writes.delete(key);
    }
    // A list's items carry no apiVersion and kind (the list does); a read by name does.
    return cached ? { ...structuredClone(cached), apiVersion, kind } : undefined;
  }

  keeps(apiVersion: string, kind: string): boolean {
    return isSecret({ apiVersion, kind }) || this.options.informers.has(`${apiVersion}/${kind}`);
  }

  remember(ref: ObjectRef, object: k8s.KubernetesObject | undefined): void {
    if (!isSecret(ref)) return;
    const { namespace, name } = ref;
    const key = `${namespace}/${name}`;
    const secret: k8s.V1Secret | undefined = object;
    if (secret && this.isOwn(namespace, secret)) {
      const held = structuredClone(secret);
      // Who wrote which field is for the API server: most of a small object's size, and nothing here reads it.
      delete held.metadata?.managedFields;
      this.secrets.set(key, held);
    } else this.secrets.delete(key);
  }

  /**
   * The operator writes this object: a copy held from before must not pass for current until the watch shows
   * the write. Returns the resourceVersion the watch shows now, for `applied`.
   */
  written(ref: ObjectRef): string | undefined {
    if (isSecret(ref)) this.forgetSecret(ref.namespace, ref.name);
    this.writes.delete(writeKey(ref));
    return this.watched(ref)?.metadata?.resourceVersion;
  }

  /**
   * A write of a watched object succeeded: its answer stands for the object until the watch moves. Only an
   * update of a copy the watch held, while the watch has not moved since: once it has (the write, or someone
   * else's after it), its copy is as new; and an object just made is read by name until the watch has it, so
   * one deleted again meanwhile is never answered from here. A Secret's answer is held as a read by name's
   * is (`remember`: only the operator's own, and answered only while the metadata watch shows its
   * resourceVersion, so one made and deleted again, or changed since, is read anew).
   */
  applied(ref: ObjectRef, before: string | undefined, object: k8s.KubernetesObject): void {
    if (isSecret(ref)) return this.remember(ref, object);
    if (!this.keeps(ref.apiVersion, ref.kind) || before === undefined || object.metadata?.resourceVersion === before) return;
    if (this.watched(ref)?.metadata?.resourceVersion !== before) return;
    const held = structuredClone(object);
    // As the watch keeps it (informer.ts): nothing here reads who wrote which field.
    delete held.metadata?.managedFields;
    this.writes.set(writeKey(ref), { object: { ...held, apiVersion: ref.apiVersion, kind: ref.kind }, before });
  }

  /**
   * A watched object the informer saw go (deleted, or its domain's garbage collected): a write's answer held
   * for it goes too. Dropped only on a read by name before, it stayed for good when nothing read that name
   * again (a deleted domain's objects), and stood ready for an object made again under it.
   */
  deleted(ref: ObjectRef): void {
    this.writes.delete(writeKey(ref));
  }

  /** A Secret the metadata watch saw change or go. */
  forgetSecret(namespace: string, name: string): void {
    this.secrets.delete(`${namespace}/${name}`);
  }

  /** Secrets held in full, for the tests. */
  heldSecrets(): string[] {
    return [...this.secrets.keys()];
  }

  /** Writes' answers held, for the tests. */
  heldWrites(): string[] {
    return [...this.writes.keys()];
  }

  /** The watch's copy of a watched kind's object; undefined for any other kind. */
  private watched({ apiVersion, kind, namespace, name }: ObjectRef): k8s.KubernetesObject | undefined {
    return this.options.informers.get(`${apiVersion}/${kind}`)?.get(name, namespace);
  }

  private isOwn(namespace: string, secret: k8s.V1Secret): boolean {
    const labels = secret.metadata?.labels ?? {};
    if (!Object.entries(this.options.ownLabels).every(([k, v]) => labels[k] === v)) return false;
    const owner = (secret.metadata?.ownerReferences ?? []).find((o) => o.kind === "SmtpDomain" && o.controller === true);
    if (!owner || !this.options.isOwnSecret(namespace, owner.name, owner.uid, secret.metadata?.name ?? "")) return false;
    let bytes = 0;
    for (const value of Object.values(secret.data ?? {})) bytes += value.length;
    for (const value of Object.values(secret.metadata?.annotations ?? {})) bytes += value.length;
    return bytes <= maxHeldSecretBytes;
  }
}
