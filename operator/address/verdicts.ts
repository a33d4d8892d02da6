// The rules' verdicts (rules.ts) kept between reconciles and judged again
// only where something changed. Judging everything costs time in proportion
// to every address in the cluster, and a creation storm changes something
// before nearly every reconcile: 10,000 addresses made at once were judged
// 10,000 times over. The rules couple namespaces only through an address or a
// domain claimed in two of them, so a changed namespace is judged again
// together with every namespace it shares a mail address with (closed over
// that relation, so each group is judged whole), in the same global age
// order: the verdicts are the ones judging everything would give.
import type { SupportAddress } from "../../crds/schema.js";
import { judgeAddresses, judgeDomains, type AddressWorld, type Verdict } from "./rules.js";

export interface VerdictWorld extends Omit<AddressWorld, "domainVerdicts" | "addresses"> {
  /** The domains' rules take the system domains too. */
  systemDomains: readonly string[];
  /** Every address (judging everything), */
  addresses: () => readonly SupportAddress[];
  /** and those of one namespace (judging some). */
  addressesIn: (namespace: string) => readonly SupportAddress[];
}

export interface Judged {
  domainVerdicts: ReadonlyMap<string, Verdict>;
  addressVerdicts: ReadonlyMap<string, Verdict>;
}

const mailOf = new WeakMap<SupportAddress, string>();
const mail = (a: SupportAddress) => {
  let m = mailOf.get(a);
  if (m === undefined) mailOf.set(a, (m = a.spec.address.toLowerCase()));
  return m;
};

const none: ReadonlySet<string> = new Set();

const sameVerdict = (a: Verdict | undefined, b: Verdict | undefined) =>
  a === b ||
  (a !== undefined &&
    b !== undefined &&
    a.served === b.served &&
    (a.served || (!b.served && a.reason === b.reason && a.message === b.message)));

export class VerdictCache {
  private domainVerdicts = new Map<string, Verdict>();
  private readonly addressVerdicts = new Map<string, Verdict>();
  private readonly dirty = new Set<string>();
  /** The mail addresses of each namespace when it was last judged: one that left a conflict frees the other side. */
  private readonly judgedMails = new Map<string, Set<string>>();
  private readonly namespacesByMail = new Map<string, Set<string>>();
  /** The verdicts' keys by namespace, to drop a namespace's before judging it again. */
  private readonly judgedKeys = new Map<string, string[]>();
  private all = true;

  /** Something in this namespace changed that the rules read (an address, a domain, a Secret it names). */
  invalidate(namespace: string | undefined): void {
    if (namespace !== undefined) this.dirty.add(namespace);
    else this.all = true;
  }

  /** Anything may have changed (a referenced Secret of an unknown namespace, a relist). */
  invalidateAll(): void {
    this.all = true;
  }

  /**
   * The namespaces that had an address with this mail address (lowercase) when they were last judged. One
   * made since is in a namespace changed since, which its own event brought back to be judged.
   */
  namespacesWith(mailAddress: string): ReadonlySet<string> {
    return this.namespacesByMail.get(mailAddress) ?? none;
  }

  /** The verdicts over `world` as it is now, judging again only the namespaces that need it. */
  verdicts(world: () => VerdictWorld): Judged {
    if (!this.all && this.dirty.size === 0) return { domainVerdicts: this.domainVerdicts, addressVerdicts: this.addressVerdicts };
    const w = world();
    // Domains are few (at most a handful per namespace): always judged whole.
    const domainVerdicts = judgeDomains(w.domains, w.limits, w.systemDomains);
    if (this.all) {
      this.addressVerdicts.clear();
      this.judgedMails.clear();
      this.namespacesByMail.clear();
      this.judgedKeys.clear();
      const addresses = w.addresses();
      for (const [key, verdict] of judgeAddresses({ ...w, addresses, domainVerdicts })) this.addressVerdicts.set(key, verdict);
      this.recordMails(addresses, undefined);
    } else {
      const namespaces = new Set(this.dirty);
      // A domain whose verdict moved (a conflict elsewhere resolved) changes its addresses' verdicts.
      for (const [key, verdict] of domainVerdicts)
        if (!sameVerdict(verdict, this.domainVerdicts.get(key))) namespaces.add(key.slice(0, key.indexOf("/")));
      for (const key of this.domainVerdicts.keys()) if (!domainVerdicts.has(key)) namespaces.add(key.slice(0, key.indexOf("/")));
      const group = this.closeOverSharedMail(w, namespaces);
      for (const namespace of group) for (const key of this.judgedKeys.get(namespace) ?? []) this.addressVerdicts.delete(key);
      const addresses = [...group].flatMap((namespace) => w.addressesIn(namespace));
      for (const [key, verdict] of judgeAddresses({ ...w, addresses, domainVerdicts })) this.addressVerdicts.set(key, verdict);
      for (const namespace of group) this.forgetMails(namespace);
      this.recordMails(addresses, group);
    }
    this.domainVerdicts = domainVerdicts;
    this.all = false;
    this.dirty.clear();
    return { domainVerdicts: this.domainVerdicts, addressVerdicts: this.addressVerdicts };
  }

  private recordMails(addresses: readonly SupportAddress[], group: ReadonlySet<string> | undefined): void {
    for (const a of addresses) {
      const namespace = a.metadata.namespace!;
      if (group && !group.has(namespace)) continue;
      const m = mail(a);
      let keys = this.judgedKeys.get(namespace);
      if (!keys) this.judgedKeys.set(namespace, (keys = []));
      keys.push(`${namespace}/${a.metadata.name}`);
      let mails = this.judgedMails.get(namespace);
      if (!mails) this.judgedMails.set(namespace, (mails = new Set()));
      mails.add(m);
      let namespaces = this.namespacesByMail.get(m);
      if (!namespaces) this.namespacesByMail.set(m, (namespaces = new Set()));
      namespaces.add(namespace);
    }
  }

  private forgetMails(namespace: string): void {
    for (const m of this.judgedMails.get(namespace) ?? []) {
      const namespaces = this.namespacesByMail.get(m);
      namespaces?.delete(namespace);
      if (namespaces?.size === 0) this.namespacesByMail.delete(m);
    }
    this.judgedMails.delete(namespace);
    this.judgedKeys.delete(namespace);
  }

  /**
   * The namespaces, with every namespace that shares a mail address with one of them (now, or when they
   * were last judged), and so on. A namespace outside the group has had no change since it was judged
   * (a change marks it), so what it had then is what it has now.
   */
  private closeOverSharedMail(w: VerdictWorld, namespaces: ReadonlySet<string>): Set<string> {
    const group = new Set(namespaces);
    const pending = [...group];
    for (let namespace = pending.pop(); namespace !== undefined; namespace = pending.pop()) {
      for (const m of [...w.addressesIn(namespace).map(mail), ...(this.judgedMails.get(namespace) ?? [])]) {
        for (const other of this.namespacesByMail.get(m) ?? []) {
          if (group.has(other)) continue;
          group.add(other);
          pending.push(other);
        }
      }
    }
    return group;
  }
}
