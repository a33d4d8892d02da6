// Watch → queue → reconcile. Informers feed keys ("namespace/name" of an
// SmtpDomain) into one de-duplicating queue; the reconciler reads the cached
// world for that key and makes it right.
import * as k8s from "@kubernetes/client-node";
import { group, version, type SmtpDomain, type SupportAddress } from "../crds/schema.js";
import type { Logger } from "../relay/ops/log.js";
import { reconcileDomain } from "./domain/reconcile.js";
import { names, type OperatorSettings } from "./domain/render.js";
import { Cluster } from "./kube/cluster.js";
import { supervisedInformer, type SupervisedInformer } from "./kube/informer.js";
import { WorkQueue } from "./queue.js";

export interface ControllerOptions {
  settings: OperatorSettings;
  log: Logger;
  concurrency?: number;
  resyncMs?: number;
  onReconcile?: (key: string, result: "Success" | "Error", seconds: number) => void;
}

export class Controller {
  readonly cluster: Cluster;
  readonly queue: WorkQueue;
  private readonly domains: SupervisedInformer<SmtpDomain & k8s.KubernetesObject>;
  private readonly addresses: SupervisedInformer<SupportAddress & k8s.KubernetesObject>;
  private readonly watched: SupervisedInformer<k8s.KubernetesObject>[];
  private resync: NodeJS.Timeout | undefined;

  constructor(
    config: k8s.KubeConfig,
    private readonly options: ControllerOptions,
  ) {
    const { log } = options;
    this.cluster = new Cluster(config);
    this.queue = new WorkQueue((key) => this.reconcile(key), {
      concurrency: options.concurrency ?? 4,
      onError: (key, error) => log.error("reconcile failed", { key, error: describe(error) }),
    });
    const custom = this.cluster.custom;
    const listCustom = <T>(plural: string) => () =>
      custom.listClusterCustomObject({ group, version, plural }) as Promise<k8s.KubernetesListObject<T & k8s.KubernetesObject>>;
    this.domains = supervisedInformer(config, `/apis/${group}/${version}/smtpdomains`, listCustom<SmtpDomain>("smtpdomains"), (d) => this.enqueue(d.metadata?.namespace, d.metadata?.name), log);
    this.addresses = supervisedInformer(config, `/apis/${group}/${version}/supportaddresses`, listCustom<SupportAddress>("supportaddresses"), (a) => this.enqueue(a.metadata?.namespace, a.spec?.domainRef?.name), log);
    const apps = this.cluster.apps;
    const core = this.cluster.core;
    const byDomainLabel = (o: k8s.KubernetesObject) => this.enqueue(o.metadata?.namespace, o.metadata?.labels?.["smtpconnector.dev/domain"]);
    this.watched = [
      // Our own Deployments: availability feeds RelayAvailable, edits are drift to repair.
      supervisedInformer(config, "/apis/apps/v1/deployments", () => apps.listDeploymentForAllNamespaces({ labelSelector: "app.kubernetes.io/managed-by=smtp-connector" }), byDomainLabel, log, "app.kubernetes.io/managed-by=smtp-connector"),
      // Secrets: ours (deleted ones come back) and the ones a domain references (TLS, secretRef).
      supervisedInformer(config, "/api/v1/secrets", () => core.listSecretForAllNamespaces(), (s) => this.secretChanged(s), log),
      supervisedInformer(config, "/api/v1/services", () => core.listServiceForAllNamespaces({ labelSelector: "app.kubernetes.io/managed-by=smtp-connector" }), byDomainLabel, log, "app.kubernetes.io/managed-by=smtp-connector"),
    ];
  }

  async start(): Promise<void> {
    await Promise.all([this.domains.start(), this.addresses.start(), ...this.watched.map((w) => w.start())]);
    // A periodic resync: level-based reconciles catch anything an event missed.
    this.resync = setInterval(() => {
      for (const d of this.domains.list()) this.enqueue(d.metadata?.namespace, d.metadata?.name);
    }, this.options.resyncMs ?? 10 * 60_000);
    this.resync.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.resync);
    this.queue.stop();
    await Promise.all([this.domains.stop(), this.addresses.stop(), ...this.watched.map((w) => w.stop())]);
  }

  private enqueue(namespace: string | undefined, name: string | undefined): void {
    if (namespace && name) this.queue.add(`${namespace}/${name}`);
  }

  private secretChanged(secret: k8s.KubernetesObject): void {
    const namespace = secret.metadata?.namespace;
    const name = secret.metadata?.name;
    const owner = secret.metadata?.labels?.["smtpconnector.dev/domain"];
    if (owner) this.enqueue(namespace, owner);
    for (const domain of this.domains.list()) {
      if (domain.metadata?.namespace !== namespace) continue;
      const referenced = [names(domain).tls, ...(domain.spec.inbound.credentials ?? []).map((c) => c.secretRef?.name)];
      if (referenced.includes(name)) this.enqueue(namespace, domain.metadata?.name);
    }
  }

  private async reconcile(key: string): Promise<{ requeueAfterMs?: number }> {
    const [namespace, name] = key.split("/") as [string, string];
    const domain = this.domains.get(name, namespace);
    // Gone: its owned objects go with it (owner references, garbage collector).
    if (!domain || domain.metadata?.deletionTimestamp) return {};
    const started = process.hrtime.bigint();
    try {
      const addresses = this.addresses.list().filter((a) => a.metadata?.namespace === namespace);
      const result = await reconcileDomain(this.cluster, { domain, addresses }, this.options.settings);
      this.options.onReconcile?.(key, "Success", Number(process.hrtime.bigint() - started) / 1e9);
      return result;
    } catch (error) {
      this.options.onReconcile?.(key, "Error", Number(process.hrtime.bigint() - started) / 1e9);
      throw error;
    }
  }
}

function describe(error: unknown): string {
  if (error instanceof k8s.ApiException) return `HTTP ${error.code}: ${String(error.body).slice(0, 300)}`;
  return error instanceof Error ? error.message : String(error);
}
