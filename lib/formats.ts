// The JSON Schema formats our TypeBox schemas use, registered once per process:
// TypeBox's registry is global, and the relay config (relay/contract) and the
// API objects (crds/validate.ts) must read a timestamp alike.
import { FormatRegistry } from "@sinclair/typebox";

// RFC 3339 timestamps, as Kubernetes writes them.
const rfc3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
if (!FormatRegistry.Has("date-time")) FormatRegistry.Set("date-time", (v) => rfc3339.test(v) && !Number.isNaN(Date.parse(v)));
