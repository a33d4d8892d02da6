// The Grafana dashboard for the relays and the operator, generated from this
// compact list (so every query names a metric we export: the drift test and
// test/unit/dashboard.test.ts check it). Shipped in the chart as a ConfigMap
// for Grafana's dashboard sidecar (metrics.grafanaDashboard.enabled).

interface Panel {
  title: string;
  unit: string;
  targets: { expr: string; legend: string }[];
  kind?: "timeseries" | "stat" | "table";
}

const rate = (metric: string, by: string, filter = "") =>
  `sum by (${by}) (rate(${metric}{namespace=~"$namespace"${filter}}[$__rate_interval]))`;
const quantile = (q: number, metric: string, by: string) =>
  `histogram_quantile(${q}, sum by (le, ${by}) (rate(${metric}_bucket{namespace=~"$namespace"}[$__rate_interval])))`;

const rows: { title: string; panels: Panel[] }[] = [
  {
    title: "Relays",
    panels: [
      {
        title: "Messages by direction and result",
        unit: "ops",
        targets: [{ expr: rate("smtpc_relay_messages_total", "direction, result"), legend: "{{direction}} {{result}}" }],
      },
      {
        title: "AUTH attempts by result",
        unit: "ops",
        targets: [{ expr: rate("smtpc_relay_auth_total", "kind, result"), legend: "{{kind}} {{result}}" }],
      },
      {
        title: "Open SMTP sessions",
        unit: "short",
        targets: [{ expr: `sum by (namespace) (smtpc_relay_sessions_active{namespace=~"$namespace"})`, legend: "{{namespace}}" }],
      },
      {
        title: "Next-hop latency (cut-through)",
        unit: "s",
        targets: [
          { expr: quantile(0.5, "smtpc_relay_next_hop_seconds", "direction"), legend: "p50 {{direction}}" },
          { expr: quantile(0.99, "smtpc_relay_next_hop_seconds", "direction"), legend: "p99 {{direction}}" },
        ],
      },
      {
        title: "Outbound messages by sender and result",
        unit: "ops",
        targets: [{ expr: rate("smtpc_relay_outbound_messages_total", "sender, result"), legend: "{{sender}} {{result}}" }],
      },
      {
        title: "Outbound delivery p99",
        unit: "s",
        targets: [{ expr: quantile(0.99, "smtpc_relay_outbound_delivery_seconds", "sender"), legend: "{{sender}}" }],
      },
      {
        title: "Bytes received",
        unit: "Bps",
        targets: [{ expr: rate("smtpc_relay_message_bytes_total", "direction"), legend: "{{direction}}" }],
      },
      {
        title: "Config reloads",
        unit: "short",
        targets: [
          { expr: `sum by (result) (increase(smtpc_relay_config_reloads_total{namespace=~"$namespace"}[$__range]))`, legend: "{{result}}" },
        ],
        kind: "stat",
      },
    ],
  },
  {
    title: "Operator",
    panels: [
      {
        title: "Conditions not True",
        unit: "short",
        targets: [
          {
            expr: `smtpc_operator_condition{status!="True", type!~"Reconciling|Stalled"} == 1`,
            legend: "{{kind}} {{namespace}}/{{name}} {{type}} {{reason}}",
          },
        ],
        kind: "table",
      },
      {
        title: "Reconciles by kind and result",
        unit: "ops",
        targets: [
          { expr: `sum by (kind, result) (rate(smtpc_operator_reconciles_total[$__rate_interval]))`, legend: "{{kind}} {{result}}" },
        ],
      },
      {
        title: "Reconcile p99",
        unit: "s",
        targets: [
          {
            expr: `histogram_quantile(0.99, sum by (le, kind) (rate(smtpc_operator_reconcile_seconds_bucket[$__rate_interval])))`,
            legend: "{{kind}}",
          },
        ],
      },
      { title: "Work queue depth", unit: "short", targets: [{ expr: "max(smtpc_operator_queue_depth)", legend: "depth" }] },
      {
        title: "API errors by code",
        unit: "short",
        targets: [
          { expr: "sum by (code) (smtpc_operator_api_errors)", legend: "{{code}}" },
          // The Event writes' apart: a 429 here is Events throttled, not reconciles.
          { expr: "sum by (code) (smtpc_operator_event_api_errors)", legend: "Events {{code}}" },
        ],
      },
      {
        title: "Rotations in progress (two active versions)",
        unit: "s",
        targets: [{ expr: "smtpc_operator_rotation_overlap_seconds", legend: "{{namespace}}/{{name}}" }],
      },
      { title: "Leader", unit: "short", targets: [{ expr: "max by (pod) (smtpc_operator_leader)", legend: "{{pod}}" }], kind: "stat" },
    ],
  },
];

export function grafanaDashboard(): object {
  let id = 0;
  const panels: object[] = [];
  let y = 0;
  for (const row of rows) {
    panels.push({ id: ++id, type: "row", title: row.title, collapsed: false, gridPos: { h: 1, w: 24, x: 0, y: y++ }, panels: [] });
    row.panels.forEach((panel, i) => {
      panels.push({
        id: ++id,
        type: panel.kind ?? "timeseries",
        title: panel.title,
        datasource: { type: "prometheus", uid: "${datasource}" },
        fieldConfig: { defaults: { unit: panel.unit }, overrides: [] },
        options: panel.kind === "table" ? { showHeader: true } : { legend: { displayMode: "list", placement: "bottom" } },
        targets: panel.targets.map((t, j) => ({
          refId: String.fromCharCode(65 + j),
          expr: t.expr,
          legendFormat: t.legend,
          ...(panel.kind === "table" ? { format: "table", instant: true } : {}),
        })),
        gridPos: { h: 8, w: 12, x: (i % 2) * 12, y: y + Math.floor(i / 2) * 8 },
      });
    });
    y += Math.ceil(row.panels.length / 2) * 8;
  }
  return {
    title: "smtp-connector",
    uid: "smtp-connector",
    tags: ["smtp-connector", "mail"],
    timezone: "browser",
    schemaVersion: 39,
    refresh: "30s",
    time: { from: "now-6h", to: "now" },
    templating: {
      list: [
        { name: "datasource", type: "datasource", query: "prometheus", label: "Data source" },
        {
          name: "namespace",
          type: "query",
          label: "Namespace",
          datasource: { type: "prometheus", uid: "${datasource}" },
          query: "label_values(smtpc_relay_sessions_total, namespace)",
          includeAll: true,
          multi: true,
          allValue: ".*",
          current: { text: "All", value: "$__all" },
        },
      ],
    },
    panels,
  };
}
