// CPU seconds from /proc, for the benchmarks' side-by-side figures (Linux only, as the benchmarks are).
import { readdirSync, readFileSync } from "node:fs";

/** A process's parent and CPU seconds (user + system), from /proc/<pid>/stat. */
function stat(pid: number | string): { parent: number; cpu: number } {
  // After the command's ") ": state, ppid, ... utime and stime at 11 and 12 (in clock ticks of 1/100 s).
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return { parent: Number(fields[1]), cpu: (Number(fields[11]) + Number(fields[12])) / 100 };
}

/** CPU seconds (user + system) a process has used. */
export function cpuSeconds(pid: number): number {
  return stat(pid).cpu;
}

/** This process's living descendants: pid to name and CPU seconds, leaving out `except` and below. */
function descendants(except?: number): Map<number, { name: string; cpu: number }> {
  const processes = new Map<number, { parent: number; cpu: number }>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      processes.set(Number(entry), stat(entry));
    } catch {
      // gone meanwhile
    }
  }
  const mine = (pid: number): boolean => {
    for (let p = processes.get(pid)?.parent; p !== undefined && p > 1; p = processes.get(p)?.parent) {
      if (p === except) return false;
      if (p === process.pid) return true;
    }
    return false;
  };
  const out = new Map<number, { name: string; cpu: number }>();
  for (const [pid, { cpu }] of processes) {
    if (pid === except || !mine(pid)) continue;
    // The command's name and its first argument: hack/testenv is one binary run as `testenv etcd ...`,
    // `testenv kube-apiserver ...`.
    let name = "?";
    try {
      const [command = "?", first] = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      name = `${command.split("/").pop()}${first && !first.startsWith("-") ? ` ${first}` : ""}`;
    } catch {
      // gone meanwhile
    }
    out.set(pid, { name, cpu });
  }
  return out;
}

/**
 * CPU seconds of this process's living descendants (a control plane it started: kube-apiserver, etcd), leaving
 * out `except` and everything below it (the operator under test).
 */
export function descendantCpuSeconds(except?: number): number {
  let sum = 0;
  for (const { cpu } of descendants(except).values()) sum += cpu;
  return sum;
}

/** The same by name: the command and its first argument, e.g. `testenv kube-apiserver`. */
export function descendantCpuByName(except?: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const { name, cpu } of descendants(except).values()) out.set(name, (out.get(name) ?? 0) + cpu);
  return out;
}
