// Watch → queue → reconcile. Informers feed keys ("namespace/name" of an
// SmtpDomain) into one de-duplicating queue; the reconciler reads the cached
// world for that key and makes it right.
import { LockoutAnnouncer } from "./domain/lockouts.js";
import { loginDigest as digestOfLogin, secretFileText } from "../relay/contract/digests.js";
import { X509Certificate } from "node:crypto";
import type * as k8s from "@kubernetes/client-node";
import { group, version, type SmtpDomain, type SupportAddress } from "../crds/schema.js";
import { objectProblems } from "../crds/validate.js";
import type { Logger } from "../lib/log.js";
import { reconcileAddress } from "./address/reconcile.js";
import { replaceConditions } from "./conditions.js";
import { EventQueue, involved, recordEvent, type EventDrop } from "./events.js";
import { failureMessage, needsAction } from "./failures.js";
import type { VerificationIO, VerificationTiming } from "./address/verification.js";
import { verificationIO, type VerificationSettings } from "./address/verification-io.js";
import { controlEndpoints } from "./address/control-client.js";
import { defaultLimits, type Limits } from "./address/rules.js";
import { VerdictCache } from "./address/verdicts.js";
import { defaultCaSecret } from "./domain/certificate.js";
import { disconnect, disconnectFinalizer, disconnectInvalid, ensureFinalizer } from "./domain/disconnect.js";
import { claimedHostnames, judgeHostnames, type HostnameConflict } from "./domain/hostname-claims.js";
import { domainCaches, reconcileDomain } from "./domain/reconcile.js";
import { isOwnSecretName, managedByLabel, names, type OperatorSettings } from "./domain/render.js";
import { ApiError, type ClusterAccess } from "./kube/access.js";
import { Cluster } from "./kube/cluster.js";
import { StringPool } from "./kube/intern.js";
import { OwnObjectReads } from "./kube/read-cache.js";
import { TimedCache } from "./timed-cache.js";
import { scopedInformer, supervisedInformer, type InformerEvent, type RelistReason, type SupervisedInformer } from "./kube/informer.js";
import { maxCaBundleBytes, maxSecretValueBytes, refusedKeys, SecretCache, tooLargeMessage } from "./kube/secrets.js";
import { WorkQueue } from "./queue.js";

export interface ControllerOptions {
  settings: OperatorSettings;
  /** The helpdesk's own domains, which can never be connected. */
  systemDomains?: readonly string[];
  /** Verification: where inbound verification emails go, and how the relays' control APIs are reached. Without it nothing is verified. */
  verification?: VerificationSettings;
  verificationTiming?: VerificationTiming;
  /** In place of `verification`'s mail and control API (the apiserver tier, which runs no relay). */
  verificationIO?: VerificationIO;
  limits?: Limits;
  log: Logger;
  concurrency?: number;
  resyncMs?: number;
  /** Watch only these namespaces (the namespace-scoped mode, RBAC per namespace); default: all. */
  namespaces?: readonly string[];
  /** Objects per list page (default 500). */
  pageSize?: number;
  onReconcile?: (kind: "SmtpDomain" | "SupportAddress", result: "Success" | "Conflict" | "Throttled" | "Error", seconds: number) => void;
  /** An Event not written (events.ts: the queue full, its object's spam filter, or the API server refused it). */
  onEventDropped?: (why: EventDrop) => void;
  /** How long stop() waits for queued Events to be written (default 5 s). */
  eventFlushMs?: number;
}

export class Controller {
  readonly cluster: Cluster;
  readonly queue: WorkQueue;
  /** Informer relists since start, by reason (the metrics). */
  readonly relists = new Map<RelistReason, number>();
  /** One copy of each text the cached objects repeat (conditions, names, labels), shared by every informer here (its size: the metrics). */
  readonly strings = new StringPool();
  /** Objects the API server sent that do not match the schema, by queue key: what is wrong, until a valid version or deletion. */
  private readonly invalid = new Map<string, readonly string[]>();
  private readonly domains: SupervisedInformer<SmtpDomain & k8s.KubernetesObject>;
  private readonly addresses: SupervisedInformer<SupportAddress & k8s.KubernetesObject>;
  private readonly watched: SupervisedInformer<k8s.KubernetesObject>[];
  /** Every Secret as metadata; the ones a domain or address names, ours among them, read by name (public: the tests look at what it holds). */
  readonly secrets: SecretCache;
  /**
   * The names of the addresses in each namespace: an event concerns its namespace, and looking there
   * instead of through every address (the informer's list, rebuilt after each event) kept a creation storm
   * or a cold start from costing time and memory in proportion to the square of the addresses.
   */
  private readonly addressNames = new Map<string, Set<string>>();
  /** What each domain or address ("domain/ns/name") names, and who names each Secret ("ns/name"). */
  private readonly referencesOf = new Map<string, readonly NamedSecret[]>();
  private readonly ownersOf = new Map<string, Set<string>>();
  /** Our relays' internal Services' EndpointSlices: the control API of every ready relay pod. */
  private readonly endpointSlices: SupervisedInformer<k8s.V1EndpointSlice>;
  /** Reads by name answered from the watches (public: the tests look at what it holds). */
  readonly ownReads: OwnObjectReads;
  private resync: NodeJS.Timeout | undefined;
  private readonly verificationIO: VerificationIO | undefined;
  private readonly judged = new VerdictCache();
  private readonly seenShapes = new Map<string, string>();
  /** The relay host names each domain claims, by "namespace/name", as last seen: who to requeue when they change. */
  private readonly claimedNames = new Map<string, readonly string[]>();
  /** judgeHostnames over every domain, until a domain changes. */
  private hostnameConflicts: Map<string, HostnameConflict[]> | undefined;
  /** The relays' last-use reports: asked at most every 10 s per domain, however often it reconciles. */
  private readonly credentialUse = new TimedCache<Map<number, string>>();
  /** DNS answers and the CA, for this Controller's domain reconciles only. */
  private readonly domainCaches = domainCaches();
  /** Keys whose reconciles the API server answered 429 in a row: how many times, and not to be tried before when. */
  private readonly throttled = new Map<string, { count: number; until: number }>();
  /** Events waiting to be written, off the reconciles' path. */
  readonly events: EventQueue;
  /** Domains and addresses a Secret event has looked at since start (the tests' measure of its work). */
  secretOwnersExamined = 0;
  /** Lockouts the relays report, each told once as a Warning Event. */
  private readonly lockouts = new LockoutAnnouncer();

  constructor(
    access: ClusterAccess,
    private readonly options: ControllerOptions,
  ) {
    const { log } = options;
    this.cluster = new Cluster(access);
    this.cluster.events = this.events = EventQueue.forCluster(this.cluster, {
      onDrop: (why, event) => {
        options.onEventDropped?.(why);
        const fields = { why, reason: event.reason, namespace: event.involvedObject.namespace, object: event.involvedObject.name };
        if (why === "Failed") log.warn("an Event could not be written", fields);
        else log.debug("an Event was dropped", fields);
      },
    });
    if (options.verificationIO) this.verificationIO = options.verificationIO;
    else if (options.verification) {
      this.verificationIO = verificationIO(options.verification, {
        controlToken: (domain) => {
          const token = this.secrets.get(names(domain).control, domain.metadata.namespace)?.data?.token;
          return token ? Buffer.from(token, "base64").toString("utf8") : undefined;
        },
        controlEndpoints: (domain) => controlEndpoints(this.endpointSlices.list(), domain.metadata.namespace!, names(domain).internal),
        // The control API is pinned to the certificate the relay serves, read from its TLS Secret.
        certificatePins: (domain) => {
          const pem = this.secrets.get(names(domain).tls, domain.metadata.namespace)?.data?.["tls.crt"];
          if (!pem) return [];
          try {
            return [new X509Certificate(Buffer.from(pem, "base64")).fingerprint256];
          } catch {
            return [];
          }
        },
      });
    }
    this.queue = new WorkQueue((key) => this.reconcile(key), {
      concurrency: options.concurrency ?? 8,
      // Until every informer has listed (start()): see WorkQueue.
      held: true,
      onError: (key, error) => log.error("reconcile failed", { key, error: describe(error) }),
    });
    // Domains and addresses judge each other (limits within a namespace, conflicts across namespaces):
    // a change re-evaluates its namespace and whoever claims the same domain or address elsewhere.
    const relisted = (reason: RelistReason) => this.relists.set(reason, (this.relists.get(reason) ?? 0) + 1);
    const { namespaces } = options;
    const paging = options.pageSize ? { pageSize: options.pageSize } : {};
    const intern = <T>(o: T): T => this.strings.intern(o);
    const ownApi = `/apis/${group}/${version}`;
    this.domains = scopedInformer(
      access,
      { prefix: ownApi, plural: "smtpdomains" },
      {
        namespaces,
        onChange: (d, event) => this.domainChanged(d, event),
        log,
        onRelist: relisted,
        ...paging,
        check: (d) => objectProblems("SmtpDomain", d),
        transform: intern,
        onInvalid: (d, problems) => this.objectInvalid("domain", d, problems),
      },
    );
    this.addresses = scopedInformer(
      access,
      { prefix: ownApi, plural: "supportaddresses" },
      {
        namespaces,
        onChange: (a, event) => this.addressChanged(a, event),
        log,
        onRelist: relisted,
        ...paging,
        check: (a) => objectProblems("SupportAddress", a),
        transform: intern,
        onInvalid: (a, problems) => this.objectInvalid("address", a, problems),
      },
    );
    const byDomainLabel = (o: k8s.KubernetesObject) =>
      this.enqueue("domain", o.metadata?.namespace, o.metadata?.labels?.["smtpconnector.dev/domain"]);
    const ours = "app.kubernetes.io/managed-by=smtp-connector";
    // Secrets: every one as metadata (ours deleted come back), the ones a domain or address names in full.
    this.secrets = new SecretCache(access, {
      ...(namespaces ? { namespaces } : {}),
      log,
      onChange: (s, event) => {
        if (event !== "add") this.ownReads.forgetSecret(s.metadata?.namespace ?? "", s.metadata?.name ?? "");
        this.secretChanged(s);
      },
      onRelist: relisted,
      ...paging,
    });
    // Read when a relay is asked something, never a reason to reconcile. The EndpointSlice controller copies
    // the Service's labels onto its slices, so the same selector finds only ours.
    this.endpointSlices = scopedInformer(
      access,
      { prefix: "/apis/discovery.k8s.io/v1", plural: "endpointslices" },
      {
        namespaces,
        onChange: () => undefined,
        log,
        labelSelector: ours,
        onRelist: relisted,
        transform: intern,
        ...paging,
      },
    );
    // The installation's CA, where no Secret informer above sees it (namespace mode, the operator's own
    // namespace not watched): that one Secret by name, as metadata, so a hand-edited CA is noticed at once.
    const ca = options.settings.caSecret ?? defaultCaSecret;
    const caWatch =
      namespaces && !namespaces.includes(ca.namespace)
        ? [
            supervisedInformer(access, `/api/v1/namespaces/${encodeURIComponent(ca.namespace)}/secrets`, {
              onChange: (s) => this.secretChanged(s),
              log,
              onRelist: relisted,
              metadataOnly: true,
              keepLabel: () => false,
              fieldSelector: `metadata.name=${ca.name}`,
            }),
          ]
        : [];
    // Our own Deployments (availability feeds RelayAvailable, edits are drift to repair), Services,
    // NetworkPolicies and PodDisruptionBudgets: label-selected, so only ours are cached.
    const owned = new Map(
      [
        { apiVersion: "apps/v1", kind: "Deployment", prefix: "/apis/apps/v1", plural: "deployments" },
        { apiVersion: "v1", kind: "Service", prefix: "/api/v1", plural: "services" },
        { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", prefix: "/apis/networking.k8s.io/v1", plural: "networkpolicies" },
        { apiVersion: "policy/v1", kind: "PodDisruptionBudget", prefix: "/apis/policy/v1", plural: "poddisruptionbudgets" },
      ].map(({ apiVersion, kind, ...resource }) => [
        `${apiVersion}/${kind}`,
        scopedInformer(access, resource, {
          namespaces,
          onChange: (o, event) => {
            if (event === "delete")
              this.ownReads.deleted({ apiVersion, kind, namespace: o.metadata?.namespace ?? "", name: o.metadata?.name ?? "" });
            byDomainLabel(o);
          },
          log,
          labelSelector: ours,
          onRelist: relisted,
          transform: intern,
          ...paging,
        }),
      ]),
    );
    this.watched = [...caWatch, this.endpointSlices, ...owned.values()];
    // The reconciles' reads by name of these and of our Secrets come from the watches above, not the API server.
    this.cluster.reads = this.ownReads = new OwnObjectReads({
      informers: owned,
      secretVersion: (namespace, name) => this.secrets.resourceVersion(namespace, name),
      isOwnSecret: (namespace, domainName, uid, secret) => {
        const domain = this.domains.get(domainName, namespace);
        if (domain?.metadata?.uid !== uid) return false;
        return isOwnSecretName(domain, secret);
      },
      ownLabels: managedByLabel,
    });
    this.cluster.log = log;
  }

  async start(): Promise<void> {
    await Promise.all([this.domains.start(), this.addresses.start(), this.secrets.start(), ...this.watched.map((w) => w.start())]);
    this.queue.start();
    // A periodic resync: level-based reconciles catch anything an event missed.
    this.resync = setInterval(() => this.enqueueAll(), this.options.resyncMs ?? 10 * 60_000);
    this.resync.unref();
  }

  /** The resources as cached now (for the metrics: their conditions, read on each scrape). */
  snapshot(): { domains: readonly SmtpDomain[]; addresses: readonly SupportAddress[] } {
    return { domains: this.domains.list(), addresses: this.addresses.list() };
  }

  async stop(): Promise<void> {
    clearInterval(this.resync);
    this.queue.stop();
    // What reconciles told is written before the process goes, within a deadline (the pod's grace period).
    if (!(await this.events.flush(this.options.eventFlushMs ?? 5_000)))
      this.options.log.warn("stopping with Events not written", { waiting: this.events.depth });
    // Past the deadline nothing new is written (the Lease is released next): what is left is dropped, counted. A
    // write already in flight may still land; an Event only tells, it changes nothing the next leader owns.
    this.events.close();
    await Promise.all([this.domains.stop(), this.addresses.stop(), this.secrets.stop(), ...this.watched.map((w) => w.stop())]);
  }

  /** Keys are "domain/<namespace>/<name>" or "address/<namespace>/<name>". */
  private enqueue(kind: "domain" | "address", namespace: string | undefined, name: string | undefined): void {
    if (namespace && name) this.queue.add(`${kind}/${namespace}/${name}`);
  }

  private enqueueAll(): void {
    for (const d of this.domains.list()) this.enqueue("domain", d.metadata?.namespace, d.metadata?.name);
    for (const a of this.addresses.list()) this.enqueue("address", a.metadata?.namespace, a.metadata?.name);
  }

  /** Everything in a namespace: its limits are counted there. */
  private enqueueNamespace(namespace: string | undefined): void {
    for (const d of this.domains.list()) if (d.metadata?.namespace === namespace) this.enqueue("domain", namespace, d.metadata?.name);
    for (const a of this.addressesIn(namespace)) this.enqueue("address", namespace, a.metadata?.name);
  }

  private addressesIn(namespace: string | undefined): SupportAddress[] {
    const out: SupportAddress[] = [];
    if (namespace === undefined) return out;
    for (const name of this.addressNames.get(namespace) ?? []) {
      const address = this.addresses.get(name, namespace);
      if (address) out.push(address);
    }
    return out;
  }

  private indexAddress(address: SupportAddress & k8s.KubernetesObject, event: InformerEvent): void {
    const { namespace, name } = address.metadata ?? {};
    if (!namespace || !name) return;
    let names = this.addressNames.get(namespace);
    if (event === "delete") {
      names?.delete(name);
      if (names?.size === 0) this.addressNames.delete(namespace);
      return;
    }
    if (!names) this.addressNames.set(namespace, (names = new Set()));
    names.add(name);
  }

  /**
   * Whether an update changed only status (the operator's own writes): such an
   * event changes no verdict and concerns fewer keys. Tracked per object by
   * generation and deletion mark.
   */
  private statusOnly(kind: string, object: k8s.KubernetesObject, event: InformerEvent): boolean {
    const key = `${kind}/${object.metadata?.namespace}/${object.metadata?.name}`;
    // Annotations count: a verification is requested by one.
    const shape = `${object.metadata?.generation ?? ""}|${object.metadata?.deletionTimestamp ? "deleting" : ""}|${object.metadata?.finalizers?.join(",") ?? ""}|${JSON.stringify(object.metadata?.annotations ?? {})}`;
    const previous = this.seenShapes.get(key);
    if (event === "delete") this.seenShapes.delete(key);
    else this.seenShapes.set(key, shape);
    return event === "update" && previous === shape;
  }

  /**
   * An object the API server sent that does not match the schema: kept out of the caches (so nothing
   * else reads it) and said on the object itself, by its own reconcile, and in the log.
   */
  private objectInvalid(kind: "domain" | "address", object: k8s.KubernetesObject, problems: readonly string[]): void {
    const { namespace, name } = object.metadata ?? {};
    if (!namespace || !name) return;
    this.invalid.set(`${kind}/${namespace}/${name}`, problems);
    this.options.log.warn("an object does not match the API schema; not acted on until it does", {
      kind: kind === "domain" ? "SmtpDomain" : "SupportAddress",
      namespace,
      name,
      problems,
    });
    this.enqueue(kind, namespace, name);
  }

  private domainChanged(domain: SmtpDomain & k8s.KubernetesObject, event: InformerEvent): void {
    const namespace = domain.metadata?.namespace;
    this.invalid.delete(`domain/${namespace}/${domain.metadata?.name}`);
    if (this.statusOnly("domain", domain, event)) {
      // Its readiness feeds its addresses' DomainReady.
      for (const a of this.addressesIn(namespace))
        if (a.spec.domainRef.name === domain.metadata?.name) this.enqueue("address", namespace, a.metadata?.name);
      return;
    }
    // Status changes neither the Secrets it names nor what the rules read.
    this.references(
      `domain/${namespace}/${domain.metadata?.name}`,
      event === "delete" ? [] : secretKeysNamedByDomain(domain).map(([n, keys]): NamedSecret => [`${namespace}/${n}`, keys]),
    );
    this.judged.invalidate(namespace);
    this.hostnameConflicts = undefined;
    this.enqueueNamespace(namespace);
    for (const other of this.domains.list()) {
      if (other.spec.domain === domain.spec.domain && other.metadata?.namespace !== domain.metadata?.namespace)
        this.enqueueNamespace(other.metadata?.namespace);
    }
    this.hostnamesChanged(domain, event);
  }

  /** Whoever claims a relay host name this domain claimed or claims now may have won or lost it. */
  private hostnamesChanged(domain: SmtpDomain, event: InformerEvent): void {
    const key = `${domain.metadata.namespace}/${domain.metadata.name}`;
    const now = event === "delete" ? [] : claimedHostnames(domain, this.options.settings.relayHostSuffix);
    const touched = new Set([...(this.claimedNames.get(key) ?? []), ...now]);
    if (event === "delete") this.claimedNames.delete(key);
    else this.claimedNames.set(key, now);
    for (const [other, names] of this.claimedNames) {
      if (other === key || !names.some((name) => touched.has(name))) continue;
      const slash = other.indexOf("/");
      this.enqueue("domain", other.slice(0, slash), other.slice(slash + 1));
    }
  }

  private addressChanged(address: SupportAddress & k8s.KubernetesObject, event: InformerEvent): void {
    this.invalid.delete(`address/${address.metadata?.namespace}/${address.metadata?.name}`);
    this.indexAddress(address, event);
    if (this.statusOnly("address", address, event)) {
      // Its readiness decides whether the relay lets the helpdesk send as it.
      this.enqueue("domain", address.metadata?.namespace, address.spec.domainRef.name);
      return;
    }
    this.references(
      `address/${address.metadata?.namespace}/${address.metadata?.name}`,
      event === "delete"
        ? []
        : secretKeysNamedByAddress(address).map(([n, keys]): NamedSecret => [`${address.metadata?.namespace}/${n}`, keys]),
    );
    this.judged.invalidate(address.metadata?.namespace);
    this.enqueueNamespace(address.metadata?.namespace);
    // Whoever claims the same address elsewhere (from the verdicts' index: a scan of every address per event
    // made a creation storm quadratic).
    for (const other of this.judged.namespacesWith(address.spec.address.toLowerCase()))
      if (other !== address.metadata?.namespace) this.enqueueNamespace(other);
  }

  private secretChanged(secret: k8s.KubernetesObject): void {
    const namespace = secret.metadata?.namespace;
    const name = secret.metadata?.name;
    const owner = secret.metadata?.labels?.["smtpconnector.dev/domain"];
    if (owner) this.enqueue("domain", namespace, owner);
    // The installation's CA: every domain's operator-issued certificate is checked against it again.
    const ca = this.options.settings.caSecret ?? defaultCaSecret;
    if (namespace === ca.namespace && name === ca.name) {
      this.domainCaches.certificateAuthority.clear();
      for (const domain of this.domains.list())
        if (!domain.spec.relay?.tls?.secretName) this.enqueue("domain", domain.metadata?.namespace, domain.metadata?.name);
    }
    // Whoever names it, from the index references() keeps: a Secret event costs its owners, not a walk of every
    // domain and every address of the namespace (at 10,000 addresses, each of their logins changing).
    for (const owner of this.ownersOf.get(`${namespace}/${name}`) ?? []) {
      this.secretOwnersExamined++;
      const [kind, , ownerName] = owner.split("/") as ["domain" | "address", string, string];
      if (kind === "domain") {
        this.enqueue("domain", namespace, ownerName);
        continue;
      }
      const address = this.addresses.get(ownerName, namespace);
      if (!address) continue;
      // The rules judge whether an address's credentials Secret is well formed.
      this.judged.invalidate(namespace);
      this.enqueue("address", namespace, ownerName);
      // The relay config carries the address's login: its domain renders again.
      this.enqueue("domain", namespace, address.spec.domainRef.name);
    }
  }

  /**
   * The rules' verdicts over everything cached, always consistent with the
   * caches: kept until a domain, address or Secret event arrives, and then
   * judged again only in the namespaces it concerns (verdicts.ts).
   */
  private verdicts() {
    const judged = this.judged.verdicts(() => ({
      domains: this.domains.list(),
      addresses: () => this.addresses.list(),
      addressesIn: (namespace) => this.addressesIn(namespace),
      systemDomains: this.options.systemDomains ?? this.options.settings.systemDomains ?? [],
      limits: this.options.limits ?? defaultLimits,
      outboundSecret: (namespace, name) => {
        const secret = this.secrets.get(name, namespace);
        if (!secret) return "missing";
        const tooLarge = refusedKeys(secret).find((key) => key === "username" || key === "password");
        if (tooLarge) return { refused: tooLargeMessage(name, tooLarge) };
        return secret.data?.username && secret.data.password ? "ok" : "invalid";
      },
    }));
    // One relay host name, one domain, across every watched namespace (judged again when a domain changes).
    this.hostnameConflicts ??= judgeHostnames(this.domains.list(), this.options.settings.relayHostSuffix);
    return { ...judged, hostnameConflicts: this.hostnameConflicts };
  }

  /** What one domain or address names now ("namespace/name" and the keys read; none: it is gone). */
  private references(owner: string, named: readonly NamedSecret[]): void {
    const touched = new Set<string>();
    for (const [key] of this.referencesOf.get(owner) ?? []) {
      this.ownersOf.get(key)?.delete(owner);
      touched.add(key);
    }
    if (named.length === 0) this.referencesOf.delete(owner);
    else this.referencesOf.set(owner, named);
    for (const [key] of named) {
      let owners = this.ownersOf.get(key);
      if (!owners) this.ownersOf.set(key, (owners = new Set()));
      owners.add(owner);
      touched.add(key);
    }
    // Each touched Secret is wanted for the union of the keys its owners read (the largest bound of each).
    for (const key of touched) {
      const owners = this.ownersOf.get(key);
      if (!owners || owners.size === 0) {
        this.ownersOf.delete(key);
        this.secrets.want(key, undefined);
        continue;
      }
      const wanted = new Map<string, number>();
      for (const o of owners) {
        for (const [k, keys] of this.referencesOf.get(o) ?? []) {
          if (k !== key) continue;
          for (const [dataKey, bound] of Object.entries(keys)) wanted.set(dataKey, Math.max(bound, wanted.get(dataKey) ?? 0));
        }
      }
      // What the cache holds is kept as objects come and go, per naming object, so no reconcile gathers
      // them from every object again.
      this.secrets.want(key, wanted);
    }
  }

  private async reconcile(key: string): Promise<{ requeueAfterMs?: number }> {
    const [kind, namespace, name] = key.split("/") as ["domain" | "address", string, string];
    const started = process.hrtime.bigint();
    const label = kind === "domain" ? "SmtpDomain" : "SupportAddress";
    // Backing off from a 429: an event for the key (its own objects' watch events, from the writes that passed)
    // waits for the retry, or it would ask a server that said it is busy at once, and count as another try.
    const wait = (this.throttled.get(key)?.until ?? 0) - performance.now();
    if (wait > 0) return { requeueAfterMs: wait };
    try {
      // Referenced Secrets as they are now, before anything judges them.
      for (const changed of await this.secrets.sync()) this.judged.invalidate(changed);
      const invalid = this.invalid.get(key);
      const result = invalid
        ? await this.reportInvalid(kind, namespace, name, invalid)
        : kind === "domain"
          ? await this.reconcileDomain(namespace, name)
          : await this.reconcileAddress(namespace, name);
      this.throttled.delete(key);
      this.options.onReconcile?.(label, "Success", Number(process.hrtime.bigint() - started) / 1e9);
      return result;
    } catch (error) {
      // A namespace being deleted refuses new objects; everything in it goes anyway. Nothing to retry.
      if (error instanceof ApiError && error.code === 403 && error.body.includes("because it is being terminated")) {
        this.options.log.debug("namespace is being deleted; nothing to reconcile", { namespace, kind: label, name });
        return {};
      }
      if (error instanceof ApiError && error.code === 409) {
        // Another writer changed an object between our read and our write (an
        // optimistic-concurrency precondition failed): read again and redo, at once.
        this.options.log.info("conflict with a concurrent writer; reconciling again", {
          kind: label,
          namespace,
          name,
          request: error.message,
        });
        this.options.onReconcile?.(label, "Conflict", Number(process.hrtime.bigint() - started) / 1e9);
        return { requeueAfterMs: 50 + Math.floor(Math.random() * 200) };
      }
      const throttled = error instanceof ApiError && error.code === 429 ? (this.throttled.get(key)?.count ?? 0) + 1 : 0;
      if (throttled > 0 && throttled <= maxThrottledRetries) {
        // The API server's flow control asks clients to slow down (a cold start among thousands of objects):
        // nothing is wrong with the resource, so nothing is written on it (a ReconcileFailed status would be
        // one more write, and another to take it back). Again later, backing off, spread out. Past a few tries
        // it is reported as any failure: a 429 that does not pass (an admission webhook's) must be seen.
        const retryMs = throttledRetryMs(throttled, error instanceof ApiError ? error.retryAfter : undefined);
        // Monotonic: a wall clock stepped back would park the key for the step.
        this.throttled.set(key, { count: throttled, until: performance.now() + retryMs });
        this.options.log.info("the API server asked to slow down (429); reconciling again later", {
          kind: label,
          namespace,
          name,
          throttled,
        });
        this.options.onReconcile?.(label, "Throttled", Number(process.hrtime.bigint() - started) / 1e9);
        return { requeueAfterMs: retryMs };
      }
      this.throttled.delete(key);
      this.options.onReconcile?.(label, "Error", Number(process.hrtime.bigint() - started) / 1e9);
      await this.reportFailure(kind, namespace, name, error).catch((reportError: unknown) =>
        this.options.log.warn("could not report the failure on the resource", {
          kind: label,
          namespace,
          name,
          error: describe(reportError),
        }),
      );
      throw error;
    }
  }

  /**
   * Says on the resource what blocks its reconcile: ReconcileFailed on
   * Stalled when only a change fixes it, on Reconciling while it is retried,
   * and on Ready unless it is Ready already; and a Warning Event. Written once per distinct failure, so a
   * retry with backoff writes nothing; the next successful reconcile replaces it.
   */
  private async reportFailure(kind: "domain" | "address", namespace: string, name: string, error: unknown): Promise<void> {
    const plural = kind === "domain" ? "smtpdomains" : "supportaddresses";
    // Read fresh: every other field of status is written back as it is.
    const { status: code, body } = await this.cluster.get(
      `/apis/${group}/${version}/namespaces/${encodeURIComponent(namespace)}/${plural}/${encodeURIComponent(name)}`,
      [404],
    );
    if (code === 404) return;
    const object = JSON.parse(body) as SmtpDomain | SupportAddress;
    if (object.metadata.deletionTimestamp) return;
    const message = failureMessage(error);
    const reported = object.status?.conditions?.find(
      (c) => (c.type === "Stalled" || c.type === "Reconciling") && c.reason === "ReconcileFailed",
    );
    if (reported?.message === message) return;
    const stalled = needsAction(error);
    const generation = object.metadata.generation ?? 0;
    // A Ready resource stays Ready: its relay serves on with what it has, and turning the domain
    // un-Ready would stop the helpdesk sending as its addresses over an API hiccup.
    const ready = object.status?.conditions?.find((c) => c.type === "Ready");
    const conditions = replaceConditions(
      object.status?.conditions,
      [
        ...(ready?.status === "True" ? [] : [{ type: "Ready", status: "False" as const, reason: "ReconcileFailed" as const, message }]),
        { type: "Stalled", status: stalled ? "True" : "False", reason: "ReconcileFailed", message },
        { type: "Reconciling", status: stalled ? "False" : "True", reason: "ReconcileFailed", message },
      ],
      generation,
      new Date(),
    );
    await this.cluster.applyStatus(plural, kind === "domain" ? "SmtpDomain" : "SupportAddress", namespace, name, {
      ...object.status,
      observedGeneration: generation,
      conditions,
    });
    await recordEvent(this.cluster, involved(object), "Warning", "ReconcileFailed", message);
  }

  /**
   * Says on an invalid object (InvalidObject on Ready and Stalled, a Warning Event) which fields are
   * wrong; once per distinct message. Only metadata and status.conditions of it are read. Being
   * deleted, it is let go (disconnectInvalid), never held for a fix.
   */
  private async reportInvalid(
    kind: "domain" | "address",
    namespace: string,
    name: string,
    problems: readonly string[],
  ): Promise<{ requeueAfterMs?: number }> {
    const plural = kind === "domain" ? "smtpdomains" : "supportaddresses";
    const label = kind === "domain" ? "SmtpDomain" : "SupportAddress";
    const { status: code, body } = await this.cluster.get(
      `/apis/${group}/${version}/namespaces/${encodeURIComponent(namespace)}/${plural}/${encodeURIComponent(name)}`,
      [404],
    );
    if (code === 404) {
      this.invalid.delete(`${kind}/${namespace}/${name}`);
      return {};
    }
    const object = JSON.parse(body) as SmtpDomain | SupportAddress;
    if (object.metadata.deletionTimestamp) {
      // Deleted as it is: a user deleting a broken object sees it go. Its finalizer's work is done as far
      // as it needs none of the invalid fields, then the finalizer goes.
      if (kind === "domain" && object.metadata.finalizers?.includes(disconnectFinalizer))
        await disconnectInvalid(this.cluster, object as SmtpDomain, this.options.log);
      return {};
    }
    const message = `not acted on: it does not match the ${group}/${version} schema this operator reads (${problems.join("; ")}); fix the object, or apply the CRD of this operator's version`;
    const conditions = Array.isArray(object.status?.conditions) ? object.status.conditions : [];
    if (conditions.find((c) => c.type === "Stalled")?.message === message) return {};
    const generation = object.metadata.generation ?? 0;
    await this.cluster.applyStatus(plural, label, namespace, name, {
      ...object.status,
      observedGeneration: generation,
      conditions: replaceConditions(
        conditions,
        [
          { type: "Ready", status: "False", reason: "InvalidObject", message },
          { type: "Stalled", status: "True", reason: "InvalidObject", message },
        ],
        generation,
        new Date(),
      ),
    });
    await recordEvent(this.cluster, involved(object), "Warning", "InvalidObject", message);
    return {};
  }

  private async reconcileDomain(namespace: string, name: string): Promise<{ requeueAfterMs?: number }> {
    const domain = this.domains.get(name, namespace);
    // Gone: its owned objects go with it (owner references, garbage collector).
    if (!domain) return {};
    if (domain.metadata?.deletionTimestamp) {
      if (domain.metadata.finalizers?.includes(disconnectFinalizer))
        await disconnect(this.cluster, domain, this.options.settings, this.options.log);
      return {};
    }
    await ensureFinalizer(this.cluster, domain);
    const { domainVerdicts, addressVerdicts, hostnameConflicts } = this.verdicts();
    const inNamespace = this.addressesIn(namespace);
    const served = inNamespace.filter((a) => addressVerdicts.get(`${namespace}/${a.metadata?.name}`)?.served);
    const notServed = inNamespace.filter(
      (a) =>
        a.spec.domainRef.name === name &&
        !a.metadata?.deletionTimestamp &&
        !addressVerdicts.get(`${namespace}/${a.metadata?.name}`)?.served,
    ).length;
    const verdict = domainVerdicts.get(`${namespace}/${name}`) ?? { served: true as const };
    const io = this.verificationIO;
    const result = await reconcileDomain(
      this.cluster,
      {
        domain,
        addresses: served,
        addressesNotServed: notServed,
        verdict,
        hostnameConflicts: hostnameConflicts.get(`${namespace}/${name}`) ?? [],
        caches: this.domainCaches,
        secret: (ns, secretName) => this.secrets.get(secretName, ns),
        ...(io
          ? {
              credentialUse: (d: SmtpDomain) =>
                this.credentialUse.get(`${d.metadata.namespace}/${d.metadata.name}`, 10_000, () => io.credentialUse(d)),
            }
          : {}),
      },
      this.options.settings,
    );
    await this.announceLockouts(domain);
    return result;
  }

  /** Tells the platform team about lockouts on the domain's relay; never fails the reconcile. */
  private async announceLockouts(domain: SmtpDomain): Promise<void> {
    const io = this.verificationIO;
    if (!io?.lockouts) return;
    try {
      await this.lockouts.announce(this.cluster, domain, (d) => io.lockouts!(d));
    } catch (error) {
      this.options.log.warn("could not record a lockout Event", {
        domain: domain.metadata.name,
        namespace: domain.metadata.namespace,
        error: error instanceof Error ? error.message : String(error),
      });
    }
  }

  private async reconcileAddress(namespace: string, name: string): Promise<{ requeueAfterMs?: number }> {
    const address = this.addresses.get(name, namespace);
    if (!address || address.metadata?.deletionTimestamp) return {};
    const verdict = this.verdicts().addressVerdicts.get(`${namespace}/${name}`) ?? { served: true as const };
    const credentials = this.secrets.get(address.spec.outbound.credentialsSecretRef.name, namespace);
    return reconcileAddress(
      this.cluster,
      address,
      verdict,
      this.domains.get(address.spec.domainRef.name, namespace),
      this.verificationIO
        ? {
            io: this.verificationIO,
            credentialsResourceVersion: credentials?.metadata?.resourceVersion,
            credentialSha256: loginDigest(credentials),
            ...(this.options.verificationTiming ? { timing: this.options.verificationTiming } : {}),
          }
        : undefined,
    );
  }
}

/** A Secret's name and the keys the operator reads of it, each with the most bytes it keeps. */
type NamedSecret = [name: string, keys: Record<string, number>];

/** 429s in a row before a reconcile's failure is reported on the resource: 1 + 2 + 4 + 8 + 16 s of backing off. */
const maxThrottledRetries = 5;

/** The longest a Retry-After is waited for: a server asking for an hour would otherwise park a domain that long. */
export const maxRetryAfterMs = 30_000;

/**
 * When the `attempt`th 429 in a row is tried again: the backoff (1, 2, 4, 8, 16 s), or later when the server's
 * Retry-After asks for more, at most 30 s; never sooner than Retry-After, so a server that knows how long it is
 * busy is not asked again before. A Retry-After that is neither delay-seconds nor an HTTP date is ignored (the
 * backoff). Up to a second of jitter spreads the thousands of keys a cold start throttles at once.
 */
export function throttledRetryMs(attempt: number, retryAfter: string | undefined, now = Date.now(), random = Math.random()): number {
  const backoff = 1_000 * 2 ** (attempt - 1);
  return Math.min(maxRetryAfterMs, Math.max(backoff, retryAfterMs(retryAfter, now) ?? 0)) + Math.floor(random * 1_000);
}

/** Retry-After as RFC 9110 gives it (delay-seconds or an HTTP date), in ms from `now`; undefined when malformed. */
function retryAfterMs(value: string | undefined, now: number): number | undefined {
  const text = value?.trim();
  if (!text) return undefined;
  if (/^[0-9]+$/.test(text)) return Number(text) * 1_000;
  // An HTTP date names its weekday, month and GMT; Date.parse alone would take "5" or "2026" as well.
  if (!/^[A-Za-z]{3}, [0-9]{2} [A-Za-z]{3} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT$/.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

const login = { username: maxSecretValueBytes, password: maxSecretValueBytes };

/**
 * The Secrets a domain names, with the keys read of them: its TLS, control and submission Secrets, its next hop's
 * login, its credential versions' and its DKIM keys' (the user's, or the ones generated for it).
 */
function secretKeysNamedByDomain(domain: SmtpDomain): NamedSecret[] {
  const n = names(domain);
  const auth = domain.spec.inbound.delivery.smtp?.authSecretRef?.name;
  return [
    [n.tls, { "tls.crt": maxSecretValueBytes }] as NamedSecret,
    [n.control, { token: maxSecretValueBytes }] as NamedSecret,
    [n.submission, login] as NamedSecret,
    ...(auth ? [[auth, login] as NamedSecret] : []),
    ...(domain.spec.inbound.credentials ?? []).flatMap((c) => (c.secretRef?.name ? [[c.secretRef.name, login] as NamedSecret] : [])),
    ...(domain.spec.dkim?.keys ?? []).map((k): NamedSecret =>
      k.privateKeySecretRef
        ? [k.privateKeySecretRef.name, { [k.privateKeySecretRef.key ?? "tls.key"]: maxSecretValueBytes }]
        : [`${domain.metadata.name}-dkim-${k.selector}`, { "private.pem": maxSecretValueBytes }],
    ),
  ];
}

/** The Secrets an address names: its outbound login and, optionally, the CA its server is checked against. */
function secretKeysNamedByAddress(address: SupportAddress): NamedSecret[] {
  const { credentialsSecretRef, caSecretRef } = address.spec.outbound;
  return [
    [credentialsSecretRef.name, login],
    ...(caSecretRef ? [[caSecretRef.name, { [caSecretRef.key ?? "ca.crt"]: maxCaBundleBytes }] as NamedSecret] : []),
  ];
}

/** SHA-256 of "username\0password" of an outbound credentials Secret, as the relay reports the login it used. */
function loginDigest(secret: k8s.V1Secret | undefined): string | undefined {
  const username = secret?.data?.username;
  const password = secret?.data?.password;
  if (!username || !password) return undefined;
  const text = (v: string) => Buffer.from(v, "base64").toString("utf8");
  // The relay reads the password from a file, as secretFileText says.
  return digestOfLogin(text(username), secretFileText(text(password)));
}

function describe(error: unknown): string {
  if (error instanceof ApiError) return `HTTP ${error.code}: ${error.body.slice(0, 300)}`;
  return error instanceof Error ? error.message : String(error);
}
