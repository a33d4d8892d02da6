// CPU seconds from /proc, for the benchmarks' side-by-side figures (Linux only, as the benchmarks are).
import { readdirSync, readFileSync } from "node:fs";

/** CPU seconds (user + system) a process has used. */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * CPU seconds of this process's living descendants (a control plane it started: kube-apiserver, etcd), leaving
 * out `except` and everything below it (the operator under test).
 */
export function descendantCpuSeconds(except?: number): number {
  const processes = new Map<number, { parent: number; cpu: number }>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const fields = readFileSync(`/proc/${entry}/stat`, "utf8").split(") ")[1]!.split(" ");
      processes.set(Number(entry), { parent: Number(fields[1]), cpu: (Number(fields[11]) + Number(fields[12])) / 100 });
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
  let sum = 0;
  for (const [pid, { cpu }] of processes) if (pid !== except && mine(pid)) sum += cpu;
  return sum;
}
