// DKIM (and ARC) verification with Debian's python3-dkim, an implementation
// independent of ours and of mailauth, fed the DNS records directly.
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** Runs `body` with the message in `msg` and a `txt` resolver answering from `records`; returns its stdout. */
async function python3Dkim(body: string[], raw: string, records: Record<string, string>): Promise<string> {
  const script = [
    "import dkim, json, sys",
    "records = json.loads(sys.argv[1])",
    "msg = sys.stdin.buffer.read()",
    "def txt(name, timeout=5): return records.get(name.decode().rstrip('.'), '').encode() or None",
    ...body,
  ].join("\n");
  // Debian's interpreter: the one python3-dkim is installed for (a pyenv python3 may come first on PATH).
  const child = execFileAsync("/usr/bin/python3", ["-c", script, JSON.stringify(records)]);
  child.child.stdin?.end(raw, "latin1");
  return (await child).stdout.trim();
}

/** Verifies every DKIM-Signature of a message; "True True" when two signatures verify. */
export async function pythonDkim(raw: string, records: Record<string, string>): Promise<string> {
  return python3Dkim(
    [
      "d = dkim.DKIM(msg)",
      "sigs = [h for h in d.headers if h[0].lower() == b'dkim-signature']",
      "print(' '.join(str(d.verify(idx=i, dnsfunc=txt)) for i in range(len(sigs))))",
    ],
    raw,
    records,
  );
}

/**
 * Each DKIM signature's verdict (a signature that does not validate is false, not an error) and the ARC
 * chain's cv ("pass", "fail", "none"), by python3-dkim.
 */
export async function pythonDkimAndArc(raw: string, records: Record<string, string>): Promise<{ dkim: boolean[]; arc: string }> {
  const out = await python3Dkim(
    [
      "d = dkim.DKIM(msg)",
      "n = len([h for h in d.headers if h[0].lower() == b'dkim-signature'])",
      "cv, results, reason = dkim.arc_verify(msg, dnsfunc=txt)",
      "def verify(i):",
      "  try: return bool(dkim.DKIM(msg).verify(idx=i, dnsfunc=txt))",
      "  except dkim.ValidationError: return False",
      "print(json.dumps({'dkim': [verify(i) for i in range(n)], 'arc': cv.decode()}))",
    ],
    raw,
    records,
  );
  return JSON.parse(out) as { dkim: boolean[]; arc: string };
}
