// A real node for the local control plane (`testenv up --node`): containerd
// with runc and a CNI bridge, a kubelet, and a kube-scheduler, all from Debian
// packages or built from the Go module proxy (prepare.sh). Pods run from the
// images given, imported into containerd (there is no registry).
//
// Everything the node does to the host is undone by stop(): the node address
// on lo, the CNI bridge, the kubelet's and CNI's iptables chains, the pods'
// cgroups, the host paths the kubelet insists on. hostState() is what the
// teardown test compares before and after.
//
// containerd and the kubelet run in a private mount namespace of their own:
// the kubelet writes host sysctls (vm.overcommit_memory, kernel.panic, ...),
// which are shadowed there by plain files; /run and /var/log get a tmpfs there
// (containerd's shim sockets, the pods' logs), and every volume the kubelet
// mounts disappears with the namespace.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import {
  closeSync,
  copyFileSync,
  existsSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export const nodeIp = "172.30.255.1";
/** The node is named by its IP: the API server reaches a kubelet by its name first (logs, exec), and a name would need DNS. */
export const nodeName = nodeIp;
export const podCidr = "10.244.0.0/24";
const bridge = "smtpc0";
/**
 * One node per machine: its address, bridge and pod range are fixed. The claim is the lock: created
 * atomically (link(2) of a complete file), it names the supervisor's PID and records every process the
 * node starts, so the next node can clean up after one that was SIGKILLed (recoverStale).
 */
export const claimFile = "/run/smtpc-node.json";
/** Host sysctls the kubelet sets at start (it refuses to start instead if told to protect them). */
const shadowedSysctls = [
  "vm/overcommit_memory",
  "vm/panic_on_oom",
  "kernel/panic",
  "kernel/panic_on_oops",
  "kernel/keys/root_maxkeys",
  "kernel/keys/root_maxbytes",
  // kube-proxy's (conntrack sizing and timeouts, localhost node ports): turned off in its config, shadowed all the same.
  "net/netfilter/nf_conntrack_max",
  "net/netfilter/nf_conntrack_tcp_timeout_established",
  "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
  "net/ipv4/conf/all/route_localnet",
].filter((k) => existsSync(`/proc/sys/${k}`));
/** Paths the kubelet uses whatever its flags say (device plugins, pod resources): bind-mounted from the state directory. */
const kubeletHostDir = "/var/lib/kubelet";
const cgroupRoot = "/sys/fs/cgroup";

export interface NodeOptions {
  kubeconfig: string;
  /** The control plane's multi-call binary (kubectl). */
  testenvBinary: string;
  /** hack/node's multi-call binary (kubelet, kube-proxy, kube-scheduler). */
  nodeBinary: string;
  /** kube-router, for its NetworkPolicy controller (kube-router.sh). */
  kubeRouter: string;
  /** docker-archives to import into containerd (the pause image first). */
  images: string[];
  /** State: containerd's root, the kubelet's, CNI's, logs. Removed by stop(). */
  dir: string;
  log?: (line: string) => void;
}

export interface RunningNode {
  name: string;
  dir: string;
  /** Stops the pods, the kubelet, containerd and the scheduler, and removes what they left on the host. */
  stop(): Promise<void>;
}

/** A process the node started, known by PID and start time (a PID reused since is never touched). */
interface Started {
  name: string;
  pid: number;
  start: string;
}

interface Claim {
  pid: number;
  /** The supervisor's start time: a claim whose PID now names another process is stale too. */
  start: string;
  dir: string;
  /** A directory the supervisor made for the whole cluster (up.ts's own): removed with the node's. */
  clusterDir?: string;
  createdKubeletDir: boolean;
  addedAddress: boolean;
  before: { chains: string[]; cgroups: string[]; ipsets: string[] };
  processes: Started[];
}

/** The host, claimed for a node: its address is on lo (the control plane listens there for pods). */
export interface NodeClaim {
  claim: Claim;
  /** Undoes the claim when no node was started on it. */
  release(): Promise<void>;
  /** Records a process started for the node (the control plane, say): a successor kills it if this one is SIGKILLed. */
  record(name: string, pid: number | undefined): void;
}

/**
 * One node per machine: claims the host and puts the node's address on lo. A claim held by a live process
 * is refused with its PID; one left by a dead process is cleaned up first (recoverStale), and what was
 * removed is logged.
 */
export async function claimNode(dir: string, options: { clusterDir?: string; log?: (line: string) => void } = {}): Promise<NodeClaim> {
  const log = options.log ?? (() => undefined);
  const me = { pid: process.pid, start: startTime(process.pid) ?? "" };
  // Exclusive first, with what a successor needs to find it; the host's state is read only once the host is ours.
  const claim: Claim = {
    ...me,
    dir,
    ...(options.clusterDir ? { clusterDir: options.clusterDir } : {}),
    createdKubeletDir: false,
    addedAddress: false,
    before: { chains: [], cgroups: [], ipsets: [] },
    processes: [],
  };
  for (;;) {
    if (tryClaim(claim)) break;
    const held = readClaim(claimFile);
    if (held && alive(held.pid, held.start)) {
      throw new Error(
        `a node already runs on this machine: pid ${held.pid} (${commandLine(held.pid)}), state in ${held.dir}; one node per machine — stop it (SIGTERM) or wait for it`,
      );
    }
    // Stale: taken over by whoever renames it away first; a racer that loses the rename tries the claim again.
    const taken = `${claimFile}.stale.${process.pid}`;
    try {
      renameSync(claimFile, taken);
    } catch {
      continue;
    }
    const stale = readClaim(taken);
    if (stale) {
      const removed = await recoverStale(stale);
      log(
        `a node left behind by pid ${stale.pid} (not running) was cleaned up${removed.length ? `: ${removed.join("; ")}` : ": nothing was left"}`,
      );
    }
    rmSync(taken, { force: true });
  }
  const before = await hostState();
  Object.assign(claim, {
    createdKubeletDir: !existsSync(kubeletHostDir),
    addedAddress: !(await loAddresses()).includes(`${nodeIp}/32`),
    before: { chains: before.iptables, cgroups: before.cgroups, ipsets: before.ipsets },
  });
  saveClaim(claim);
  if (claim.addedAddress) await run("ip", ["addr", "add", `${nodeIp}/32`, "dev", "lo"]);
  return { claim, release: () => teardown({ dir }, claim, [], () => undefined), record: (name, pid) => record(claim, name, pid) };
}

/** Creates the claim file whole or not at all: a successor never reads half a claim. */
function tryClaim(claim: Claim): boolean {
  const partial = `${claimFile}.${process.pid}`;
  writeFileSync(partial, JSON.stringify(claim));
  try {
    linkSync(partial, claimFile);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  } finally {
    rmSync(partial, { force: true });
  }
}

/** Replaces our claim (atomically: rename). */
function saveClaim(claim: Claim) {
  const partial = `${claimFile}.${process.pid}`;
  writeFileSync(partial, JSON.stringify(claim));
  renameSync(partial, claimFile);
}

function record(claim: Claim, name: string, pid: number | undefined) {
  const start = pid === undefined ? undefined : startTime(pid);
  if (pid === undefined || start === undefined) return;
  claim.processes.push({ name, pid, start });
  saveClaim(claim);
}

function readClaim(file: string): Claim | undefined {
  try {
    const parsed = JSON.parse(readFileSync(file, "utf8")) as Partial<Claim>;
    if (typeof parsed.pid !== "number" || typeof parsed.dir !== "string") return undefined;
    return {
      start: "",
      createdKubeletDir: false,
      addedAddress: false,
      before: { chains: [], cgroups: [], ipsets: [] },
      processes: [],
      ...parsed,
    } as Claim;
  } catch {
    return undefined;
  }
}

/** A process's start time in clock ticks since boot (/proc/PID/stat field 22); undefined once it is gone or a zombie. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[0] === "Z" ? undefined : fields[19];
  } catch {
    return undefined;
  }
}

/** The same process still runs: the PID exists and started when it was recorded (an older claim without a start time: the PID alone). */
function alive(pid: number, start: string): boolean {
  const now = startTime(pid);
  return now !== undefined && (start === "" || now === start);
}

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ").slice(0, 200);
  } catch {
    return "?";
  }
}

/**
 * What a node whose supervisor was killed left running and on the host, removed: the processes it
 * recorded (by PID and start time), containerd's shims for its socket, the processes in the pod cgroups
 * it created; with them gone its mount namespace and the pods' network namespaces go too; then what
 * teardown removes (address, bridge, chains, ipsets, cgroups, directories). Returns what was removed.
 */
export async function recoverStale(stale: Claim): Promise<string[]> {
  const removed: string[] = [];
  const socket = join(stale.dir, "containerd/containerd.sock");
  const victims = new Map<number, string>();
  for (const p of stale.processes) if (alive(p.pid, p.start)) victims.set(p.pid, `${p.name} (pid ${p.pid})`);
  for (const pid of shimsOf(socket)) victims.set(pid, `containerd-shim (pid ${pid})`);
  for (const path of cgroups().filter((c) => !stale.before.cgroups.includes(c)))
    for (const pid of cgroupProcesses(path)) if (!victims.has(pid)) victims.set(pid, `a pod's process (pid ${pid}, in ${path})`);
  for (const pid of victims.keys()) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
  const deadline = Date.now() + 15_000;
  while ([...victims.keys()].some((pid) => startTime(pid) !== undefined) && Date.now() < deadline)
    await new Promise((resolve) => setTimeout(resolve, 100));
  if (victims.size) removed.push(`killed ${[...victims.values()].join(", ")}`);
  const state = await hostState();
  await teardown({ dir: stale.dir }, stale, [], () => undefined, { keepClaim: true });
  const after = await hostState();
  const gone = (what: string, a: string[], b: string[]) => {
    const left = a.filter((x) => !b.includes(x));
    if (left.length) removed.push(`${what}: ${left.join(", ")}`);
  };
  gone("address on lo", state.loAddresses, after.loAddresses);
  gone("links", state.links, after.links);
  gone("iptables chains", state.iptables, after.iptables);
  gone("ipsets", state.ipsets, after.ipsets);
  gone("cgroups", state.cgroups, after.cgroups);
  gone("paths", state.paths, after.paths);
  for (const d of [stale.dir, stale.clusterDir]) {
    if (d && existsSync(d)) {
      rmSync(d, { recursive: true, force: true });
      removed.push(`directory ${d}`);
    }
  }
  return removed;
}

/** Every process in a cgroup tree. */
function cgroupProcesses(path: string): number[] {
  const pids: number[] = [];
  const walk = (dir: string) => {
    try {
      for (const line of readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n")) if (/^\d+$/.test(line)) pids.push(Number(line));
      for (const entry of readdirSync(dir)) if (statSync(join(dir, entry)).isDirectory()) walk(join(dir, entry));
    } catch {
      // removed meanwhile
    }
  };
  walk(path);
  return pids;
}

export async function startNode(options: NodeOptions, nodeClaim: NodeClaim): Promise<RunningNode> {
  const { claim } = nodeClaim;
  const recordProcess = (name: string, pid: number | undefined) => nodeClaim.record(name, pid);
  const log = options.log ?? (() => undefined);
  const dir = options.dir;
  const children: { name: string; child: ChildProcess }[] = [];
  const stop = () => teardown(options, claim, children, log);
  try {
    for (const sub of ["containerd", "cni/net.d", "cni/ipam", "kubelet/root", "kubelet/pki", "sysctl"])
      mkdirSync(join(dir, sub), { recursive: true });
    if (claim.createdKubeletDir) mkdirSync(kubeletHostDir, { recursive: true });

    // The mount namespace, held open by a sleep; containerd and the kubelet join it.
    const binds = shadowedSysctls.map((key) => {
      const shadow = join(dir, "sysctl", key.replaceAll("/", "."));
      writeFileSync(shadow, readFileSync(`/proc/sys/${key}`));
      return `mount --bind ${shadow} /proc/sys/${key}`;
    });
    const nsScript = [
      ...binds,
      "mount -t tmpfs tmpfs /run",
      "mount -t tmpfs tmpfs /var/log",
      `mount --bind ${join(dir, "kubelet/root")} ${kubeletHostDir}`,
      "echo ready",
      "exec sleep infinity",
    ].join(" && ");
    const holder = spawn("unshare", ["-m", "--propagation", "private", "--", "sh", "-c", nsScript], { stdio: ["ignore", "pipe", "pipe"] });
    children.push({ name: "namespace", child: holder });
    recordProcess("namespace", holder.pid);
    await new Promise<void>((resolve, reject) => {
      let out = "";
      holder.stdout.on("data", (c: Buffer) => ((out += c.toString()), out.includes("ready") && resolve()));
      holder.stderr.on("data", (c: Buffer) => (out += c.toString()));
      holder.once("exit", (code) => reject(new Error(`the node's mount namespace exited (${code}): ${out}`)));
    });
    const inNamespace = (name: string, command: string, args: string[]) => {
      const logFile = openSync(join(dir, `${name}.log`), "w");
      const child = spawn("nsenter", ["-t", String(holder.pid), "-m", "--", command, ...args], { stdio: ["ignore", logFile, logFile] });
      closeSync(logFile);
      children.push({ name, child });
      recordProcess(name, child.pid);
      return child;
    };

    const socket = join(dir, "containerd/containerd.sock");
    writeFileSync(join(dir, "containerd/config.toml"), containerdConfig(dir));
    writeFileSync(join(dir, "cni/net.d/10-smtpc.conflist"), JSON.stringify(cniConfig(dir), null, 1));
    const containerd = inNamespace("containerd", "containerd", ["--config", join(dir, "containerd/config.toml")]);
    await until(
      "containerd",
      containerd,
      dir,
      async () =>
        await run("ctr", ["-a", socket, "version"]).then(
          () => true,
          () => false,
        ),
      30_000,
    );
    for (const archive of options.images) {
      const started = Date.now();
      await run("ctr", ["-a", socket, "-n", "k8s.io", "images", "import", archive], { maxBuffer: 16 * 1024 * 1024 });
      log(`imported ${archive} in ${((Date.now() - started) / 1000).toFixed(1)}s`);
    }

    writeFileSync(join(dir, "kubelet/config.yaml"), kubeletConfig(socket));
    const kubelet = inNamespace("kubelet", options.nodeBinary, [
      "kubelet",
      `--config=${join(dir, "kubelet/config.yaml")}`,
      `--kubeconfig=${options.kubeconfig}`,
      `--root-dir=${kubeletHostDir}`,
      `--cert-dir=${join(dir, "kubelet/pki")}`,
      `--node-ip=${nodeIp}`,
      `--hostname-override=${nodeName}`,
      "--v=1",
    ]);
    const schedulerLog = openSync(join(dir, "kube-scheduler.log"), "w");
    const scheduler = spawn(
      options.nodeBinary,
      ["kube-scheduler", `--kubeconfig=${options.kubeconfig}`, "--leader-elect=false", "--secure-port=0", "--v=1"],
      { stdio: ["ignore", schedulerLog, schedulerLog] },
    );
    closeSync(schedulerLog);
    children.push({ name: "kube-scheduler", child: scheduler });
    recordProcess("kube-scheduler", scheduler.pid);

    const kubectl = (...args: string[]) => run(options.testenvBinary, ["kubectl", `--kubeconfig=${options.kubeconfig}`, ...args]);
    await until(
      "the node to be Ready",
      kubelet,
      dir,
      async () => {
        const ready = await kubectl("get", "node", nodeName, "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}').then(
          (r) => r.stdout,
          () => "",
        );
        return ready === "True";
      },
      120_000,
    );
    // A NetworkPolicy enforcer wants the node's pod range; no node-ipam controller runs here: the bridge's range.
    await kubectl("patch", "node", nodeName, "--type=merge", "-p", JSON.stringify({ spec: { podCIDR: podCidr, podCIDRs: [podCidr] } }));
    // Services, kubernetes's among them (pods reach the API server there): kube-proxy in iptables mode, in the
    // node's namespace (the sysctls it would write are shadowed there), node ports on the node's address only.
    writeFileSync(join(dir, "kube-proxy.yaml"), kubeProxyConfig(options.kubeconfig));
    const proxy = inNamespace("kube-proxy", options.nodeBinary, ["kube-proxy", `--config=${join(dir, "kube-proxy.yaml")}`, "--v=1"]);
    await until(
      "kube-proxy's rules for the kubernetes Service",
      proxy,
      dir,
      async () =>
        (
          await run("iptables", ["-t", "nat", "-S", "KUBE-SERVICES"]).then(
            (r) => r.stdout,
            () => "",
          )
        ).includes("default/kubernetes:https"),
      60_000,
    );
    // NetworkPolicies enforced: kube-router's firewall only (iptables + ipset beside the CNI bridge; no routing,
    // no service proxy: IPVS is not in this kernel). It needs the node's podCIDR (set above).
    const router = inNamespace("kube-router", options.kubeRouter, [
      `--kubeconfig=${options.kubeconfig}`,
      `--hostname-override=${nodeName}`,
      "--run-firewall=true",
      "--run-router=false",
      "--run-service-proxy=false",
      "--enable-cni=false",
      "--health-port=0",
      "--metrics-port=0",
      "--service-cluster-ip-range=10.0.0.0/20",
      "--v=1",
    ]);
    await until(
      "kube-router's firewall chains",
      router,
      dir,
      async () => (await chains()).some((c) => c.endsWith("/KUBE-ROUTER-FORWARD")),
      60_000,
    );
    return { name: nodeName, dir, stop };
  } catch (error) {
    // The teardown removes the state directory: the components' logs are kept beside it for the error.
    const kept = `${dir}-logs`;
    mkdirSync(kept, { recursive: true });
    for (const name of readdirSync(dir).filter((n) => n.endsWith(".log"))) copyFileSync(join(dir, name), join(kept, name));
    await stop();
    throw new Error(`${String(error)} (the components' logs: ${kept})`);
  }
}

async function until(what: string, child: ChildProcess, dir: string, ready: () => Promise<boolean>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (!(await ready())) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`waiting for ${what}: the process exited (${child.exitCode ?? child.signalCode}); logs in ${dir}`);
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; logs in ${dir}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

async function stopChild(child: ChildProcess, graceMs = 10_000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}

async function teardown(
  options: Partial<NodeOptions> & { dir: string },
  claim: Claim,
  children: { name: string; child: ChildProcess }[],
  log: (line: string) => void,
  { keepClaim = false } = {},
) {
  const { dir } = options;
  const named = (name: string) => children.find((c) => c.name === name)?.child;
  const socket = join(dir, "containerd/containerd.sock");
  const quiet = (command: string, args: string[]) =>
    run(command, args).then(
      (r) => r.stdout,
      () => "",
    );
  // Pods first, while the kubelet runs: it stops them and CNI removes their network (veth, IPAM, portmap rules).
  const kubelet = named("kubelet");
  if (kubelet && kubelet.exitCode === null && options.testenvBinary && options.kubeconfig) {
    await stopChild(named("kube-scheduler")!);
    await quiet(options.testenvBinary, [
      "kubectl",
      `--kubeconfig=${options.kubeconfig}`,
      "delete",
      "pods",
      "--all",
      "--all-namespaces",
      "--field-selector",
      `spec.nodeName=${nodeName}`,
      "--grace-period=2",
      "--wait=true",
      "--timeout=60s",
    ]);
  }
  for (const name of ["kube-scheduler", "kube-router", "kube-proxy", "kubelet"]) {
    const child = named(name);
    if (child) await stopChild(child);
  }
  // Whatever still runs (pods of a kubelet that died, sandboxes): killed and removed through containerd.
  if (named("containerd")?.exitCode === null) {
    const ctr = (...args: string[]) => quiet("ctr", ["-a", socket, "-n", "k8s.io", ...args]);
    const tasks = (await ctr("tasks", "ls", "-q")).split("\n").filter(Boolean);
    for (const task of tasks) await ctr("tasks", "kill", "-s", "SIGKILL", task);
    const deadline = Date.now() + 10_000;
    for (const task of tasks) {
      // A killed task can be deleted once it has stopped.
      while (Date.now() < deadline) {
        await ctr("tasks", "delete", task);
        if (!(await ctr("tasks", "ls", "-q")).split("\n").includes(task)) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    for (const container of (await ctr("containers", "ls", "-q")).split("\n").filter(Boolean)) await ctr("containers", "delete", container);
    await stopChild(named("containerd")!);
  }
  // The shims containerd started outlive it; each was given our socket's address.
  for (const pid of shimsOf(socket)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone already
    }
  }
  const holder = named("namespace");
  if (holder) await stopChild(holder);
  await quiet("ip", ["link", "del", bridge]);
  if (claim.addedAddress) await quiet("ip", ["addr", "del", `${nodeIp}/32`, "dev", "lo"]);
  await removeNewChains(claim.before.chains);
  // kube-router's sets, once no rule refers to them (its own --cleanup-config leaves them behind).
  for (const set of (
    await run("ipset", ["list", "-n"]).then(
      (r) => r.stdout,
      () => "",
    )
  )
    .split("\n")
    .filter((n) => n.startsWith("KUBE-") && !claim.before.ipsets.includes(n))) {
    await run("ipset", ["destroy", set]).catch(() => undefined);
  }
  removeNewCgroups(claim.before.cgroups);
  if (claim.createdKubeletDir) {
    try {
      rmdirSync(kubeletHostDir);
    } catch (error) {
      log(`${kubeletHostDir} not removed: ${String(error)}`);
    }
  }
  rmSync(dir, { recursive: true, force: true });
  if (!keepClaim) rmSync(claimFile, { force: true });
}

function shimsOf(socket: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (argv[0]?.endsWith("containerd-shim-runc-v2") && argv.includes(socket)) pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

const tables = ["filter", "nat", "mangle", "raw"];
const families = ["iptables", "ip6tables"];

/** `iptables -S` of every table of both families, one line an entry (none where a table cannot be listed). */
async function ruleListings(): Promise<{ family: string; table: string; lines: string[] }[]> {
  const listings: { family: string; table: string; lines: string[] }[] = [];
  for (const family of families) {
    for (const table of tables) {
      const listed = await run(family, ["-t", table, "-S"]).then(
        (r) => r.stdout,
        () => "",
      );
      listings.push({ family, table, lines: listed.split("\n") });
    }
  }
  return listings;
}

/**
 * The chains a node makes (the kubelet's KUBE-*, CNI's CNI-*), as "iptables/nat/KUBE-FOO". Other
 * engineers' tests share this machine: only chains of these names are ever looked at or removed.
 */
const nodeChain = /^(KUBE-|CNI-)/;
async function chains(): Promise<string[]> {
  const found: string[] = [];
  for (const { family, table, lines } of await ruleListings()) {
    for (const line of lines) {
      const match = /^-N (\S+)$/.exec(line);
      if (match && nodeChain.test(match[1]!)) found.push(`${family}/${table}/${match[1]}`);
    }
  }
  return found.sort();
}

/** Rules that jump to or live in a node's chain. */
async function chainRules(): Promise<string[]> {
  const found: string[] = [];
  for (const { family, table, lines } of await ruleListings()) {
    for (const line of lines) if (line.startsWith("-A ") && /\b(KUBE|CNI)-/.test(line)) found.push(`${family}/${table}: ${line}`);
  }
  return found.sort();
}

/** Chains the node added: their jumps removed, then flushed and deleted. */
async function removeNewChains(before: string[]) {
  const added = (await chains()).filter((c) => !before.includes(c));
  for (const entry of added) {
    const [family, table, chain] = entry.split("/") as [string, string, string];
    const rules = (
      await run(family, ["-t", table, "-S"]).then(
        (r) => r.stdout,
        () => "",
      )
    ).split("\n");
    for (const rule of rules) {
      if (!rule.startsWith("-A ") || !rule.split(" ").includes(chain) || rule.startsWith(`-A ${chain} `)) continue;
      await run(family, ["-t", table, ...splitRule(rule.replace(/^-A /, "-D "))]).catch(() => undefined);
    }
  }
  for (const entry of added) {
    const [family, table, chain] = entry.split("/") as [string, string, string];
    await run(family, ["-t", table, "-F", chain]).catch(() => undefined);
  }
  for (const entry of added) {
    const [family, table, chain] = entry.split("/") as [string, string, string];
    await run(family, ["-t", table, "-X", chain]).catch(() => undefined);
  }
}

/** iptables -S quotes comments: split like a shell would, for these rules. */
function splitRule(rule: string): string[] {
  return [...rule.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!);
}

/** The kubelet's cgroups (kubepods) at the root of every cgroup hierarchy (v1 controllers and the v2 mount). */
function cgroups(): string[] {
  const found: string[] = [];
  for (const hierarchy of readdirSync(cgroupRoot)) {
    const path = join(cgroupRoot, hierarchy);
    try {
      if (!statSync(path).isDirectory()) continue;
      for (const entry of readdirSync(path))
        if (entry.startsWith("kubepods") && statSync(join(path, entry)).isDirectory()) found.push(join(path, entry));
    } catch {
      // a hierarchy that cannot be read holds nothing of ours
    }
  }
  return found.sort();
}

/** cgroups outlive the pods in them: the node's (kubepods and below) are removed deepest first. */
function removeNewCgroups(before: string[]) {
  const removeTree = (path: string) => {
    for (const entry of readdirSync(path)) {
      const child = join(path, entry);
      if (statSync(child).isDirectory()) removeTree(child);
    }
    rmdirSync(path);
  };
  for (const path of cgroups().filter((c) => !before.includes(c))) {
    try {
      removeTree(path);
    } catch {
      // a cgroup with a process still in it stays; the teardown test reports it
    }
  }
}

async function loAddresses(): Promise<string[]> {
  const out = await run("ip", ["-o", "addr", "show", "dev", "lo"]).then(
    (r) => r.stdout,
    () => "",
  );
  return [...out.matchAll(/inet6? (\S+)/g)].map((m) => m[1]!).sort();
}

export interface HostState {
  loAddresses: string[];
  links: string[];
  iptables: string[];
  iptablesRules: string[];
  ipsets: string[];
  cgroups: string[];
  mounts: string[];
  paths: string[];
  sysctls: Record<string, string>;
}

/**
 * What a node could leave on the host: the teardown test compares it before and after. Five engineers'
 * tests share the machine, so it is narrowed to what is a node's (its names, paths and address).
 */
export async function hostState(): Promise<HostState> {
  const links = (
    await run("ip", ["-o", "link", "show"]).then(
      (r) => r.stdout,
      () => "",
    )
  )
    .split("\n")
    .filter(Boolean)
    .map((l) => l.split(":")[1]!.trim().split("@")[0]!)
    .filter((l) => l === bridge || /^(veth|cni)/.test(l))
    .sort();
  const ipsets = (
    await run("ipset", ["list", "-n"]).then(
      (r) => r.stdout,
      () => "",
    )
  )
    .split("\n")
    .filter((n) => n.startsWith("KUBE-"))
    .sort();
  const mounts = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => l.split(" ")[4]!)
    .filter(
      (m) =>
        /^\/(var\/lib\/kubelet|run\/netns|run\/containerd|var\/log\/pods|var\/log\/containers)(\/|$)/.test(m) ||
        m.includes("smtpc-cluster-") ||
        m.includes("/kubepods"),
    )
    .sort();
  const paths = [kubeletHostDir, "/var/log/pods", "/var/log/containers", "/run/containerd", "/var/lib/cni", "/run/netns", claimFile].filter(
    (p) => existsSync(p),
  );
  const sysctls = Object.fromEntries(
    [...shadowedSysctls, "net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"].map((k) => [
      k,
      existsSync(`/proc/sys/${k}`) ? readFileSync(`/proc/sys/${k}`, "utf8").trim() : "",
    ]),
  );
  const lo = (await loAddresses()).filter((a) => a.startsWith(`${nodeIp}/`));
  return {
    loAddresses: lo,
    links,
    iptables: await chains(),
    iptablesRules: await chainRules(),
    ipsets,
    cgroups: cgroups(),
    mounts,
    paths,
    sysctls,
  };
}

function containerdConfig(dir: string): string {
  return `version = 2
root = "${dir}/containerd/root"
state = "${dir}/containerd/state"
[grpc]
  address = "${dir}/containerd/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "${dir}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  # Imported with ctr from a catatonit build (prepare.sh): no registry is reachable.
  sandbox_image = "registry.k8s.io/pause:3.10"
  # Root here lacks CAP_SYS_RESOURCE, so no process may lower its oom_score_adj (the CRI plugin gives
  # sandboxes -998): runc would fail with "failed to update /proc/self/oom_score_adj: Permission denied".
  restrict_oom_score_adj = true
  # containerd 1.x's default, kept on purpose: ports below 1024 stay privileged in pods, as on many
  # clusters, so a pod that needs a capability to bind shows it here (ADR 0012).
  enable_unprivileged_ports = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${dir}/cni/net.d"
`;
}

/** Pods on a bridge with the host as gateway; no masquerading: nothing in a pod may leave the machine. */
function cniConfig(dir: string) {
  return {
    cniVersion: "1.0.0",
    name: "smtpc-pods",
    plugins: [
      {
        type: "bridge",
        bridge,
        isGateway: true,
        ipMasq: false,
        hairpinMode: true,
        ipam: { type: "host-local", ranges: [[{ subnet: podCidr }]], routes: [{ dst: "0.0.0.0/0" }], dataDir: join(dir, "cni/ipam") },
      },
      { type: "portmap", capabilities: { portMappings: true } },
    ],
  };
}

function kubeProxyConfig(kubeconfig: string): string {
  return `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: { kubeconfig: ${kubeconfig} }
hostnameOverride: "${nodeName}"
mode: iptables
clusterCIDR: ${podCidr}
# Node ports on the node's own address only: nothing else on this shared machine is touched.
nodePortAddresses: ["${nodeIp}/32"]
iptables: { localhostNodePorts: false }
# Leave the host's conntrack settings alone.
conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s }
# No health or metrics server: nothing here reads them, and no port is taken.
healthzBindAddress: ""
metricsBindAddress: ""
`;
}

function kubeletConfig(socket: string): string {
  return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine's cgroups are v1; the kubelet refuses them unless told otherwise.
failCgroupV1: false
# containerd 1.6 has no RuntimeConfig CRI call, so the kubelet needs the driver named.
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://${socket}
address: ${nodeIp}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 0
# The API server presents no client certificate to kubelets (testenv sets none).
authentication: { anonymous: { enabled: true }, webhook: { enabled: false } }
authorization: { mode: AlwaysAllow }
# Pods get no DNS servers: nothing in them may reach out.
resolvConf: ""
clusterDomain: cluster.local
evictionHard: { memory.available: "100Mi", nodefs.available: "2%", imagefs.available: "2%" }
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
# Mounted Secrets are refreshed within seconds, as the rotation tests need.
syncFrequency: 10s
`;
}
