// The fault suite's figures: each test records its own; `npm run test:faults`
// collects them into docs/reliability.md (hack/reliability-report.ts).
import { writeFileSync } from "node:fs";
import { join } from "node:path";

export interface FaultFigures {
  /** What was done, in one line. */
  scenario: string;
  figures: Record<string, number | string>;
  /** What happened during the run, in order. */
  events?: string[];
}

export function recordFigures(name: string, result: FaultFigures): void {
  console.log(`# ${name}: ${JSON.stringify(result)}`);
  const dir = process.env.SMTPC_RELIABILITY_DIR;
  if (dir) writeFileSync(join(dir, `${name}.json`), JSON.stringify(result, null, 2) + "\n");
}
