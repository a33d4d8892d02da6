// A node:test reporter that writes one JSON line per finished test (file, name,
// passed, duration), for hack/test-repeat.ts to count pass rates across runs.
// test-tier.sh adds it beside the spec reporter when SMTPC_TEST_RESULTS names a file.
import type { TestEvent } from "node:test/reporters";

export default async function* results(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  for await (const event of source) {
    if (event.type !== "test:pass" && event.type !== "test:fail") continue;
    const { data } = event;
    // Suites report too; only leaf tests (no subtests counted) are worth a rate.
    if (data.details.type === "suite") continue;
    const failure = event.type === "test:fail" ? describe(event.data.details.error) : undefined;
    yield `${JSON.stringify({ file: data.file ?? "", name: data.name, passed: event.type === "test:pass" && !data.skip, skipped: Boolean(data.skip), ms: Math.round(data.details.duration_ms), failure })}\n`;
  }
}

/** The assertion or error inside the runner's wrapper, short enough for one line of a report. */
function describe(error: Error): string {
  const cause = (error as Error & { cause?: unknown }).cause;
  const message = cause instanceof Error ? cause.message : typeof cause === "string" ? cause : error.message;
  return message.slice(0, 300);
}
