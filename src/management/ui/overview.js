// The overview: object totals, alarms and the node's memory and disk, live charts of message
// rates and queued messages (polled every 5 s; the samples stay in the page for 10 minutes, so
// coming back to the tab shows the recent past; the charts show the last 1, 5 or 10 minutes),
// and the per-shard load when the broker reports it.

import { get, api } from "/ui/api.js";
import { h, clear, number, bytes, duration, section, facts } from "/ui/dom.js";
import { lineChart, fractionBar } from "/ui/chart.js";
import { select } from "/ui/forms.js";

const POLL_MS = 5000;
const KEEP_MS = 10 * 60 * 1000;

const RATE_SERIES = [
  { key: "publish", label: "Publish", color: "#2f7ed8" },
  { key: "confirm", label: "Confirm", color: "#8e44ad" },
  { key: "deliver_get", label: "Deliver / get", color: "#27ae60" },
  { key: "ack", label: "Ack", color: "#e67e22" },
  { key: "redeliver", label: "Redeliver", color: "#c0392b" },
  { key: "return_unroutable", label: "Unroutable", color: "#7f8c8d" },
];

const QUEUED_SERIES = [
  { key: "messages_ready", label: "Ready", color: "#2f7ed8" },
  { key: "messages_unacknowledged", label: "Unacked", color: "#e67e22" },
  { key: "messages", label: "Total", color: "#34495e" },
];

/// Kept across visits to the tab.
const history = { rates: [], queued: [], windowSeconds: 60 };

function remember(list, sample) {
  list.push(sample);
  while (list.length && list[0].at < sample.at - KEEP_MS) list.shift();
}

const TOTALS = [
  ["connections", "Connections", "#/connections"],
  ["channels", "Channels", "#/channels"],
  ["exchanges", "Exchanges", "#/exchanges"],
  ["queues", "Queues", "#/queues"],
  ["consumers", "Consumers", null],
];

function totalsView(totals) {
  return h("div", { class: "cards" }, TOTALS.map(([key, label, href]) =>
    h(href ? "a" : "div", { class: "card", href, dataset: { total: key } }, h("span", { class: "card-value" }, number(totals[key] || 0)), h("span", { class: "card-label" }, label))));
}

function alarmView(node, health) {
  const alarms = [];
  if (node) {
    if (node.mem_alarm) alarms.push("Memory alarm: publishers are blocked");
    if (node.disk_free_alarm) alarms.push("Disk alarm: publishers are blocked");
  } else if (health && health.status === "failed") {
    for (const alarm of health.alarms || []) alarms.push(`${alarm.resource} alarm: publishers are blocked`);
  }
  const state = alarms.length
    ? h("div", { class: "alarm raised", dataset: { alarms: alarms.length } }, alarms.map((text) => h("div", {}, "⚠ ", text)))
    : h("div", { class: "alarm clear", dataset: { alarms: 0 } }, "✓ No alarms");
  if (!node) return h("div", {}, state);
  const memoryShare = node.mem_limit ? node.mem_used / node.mem_limit : 0;
  return h("div", {}, state, facts([
    ["Node", node.name],
    ["Memory", h("span", { title: "used of the high watermark" }, fractionBar(memoryShare), ` ${bytes(node.mem_used)} of ${bytes(node.mem_limit)}`)],
    ["Disk free", `${bytes(node.disk_free)} (limit ${bytes(node.disk_free_limit)})`],
    ["Uptime", duration(node.uptime)],
    ["Shards", node.shards === undefined ? "–" : String(node.shards)],
  ]));
}

function shardView(shards) {
  const rows = shards.map((shard) => {
    const turns = shard.loop_turns_details ? `${number(shard.loop_turns_details.rate)}/s` : number(shard.loop_turns);
    return h("tr", { dataset: { shard: shard.shard } },
      h("td", {}, String(shard.shard)),
      h("td", { class: "busy" }, fractionBar(shard.busy)),
      h("td", { class: "num" }, number(shard.connections)),
      h("td", { class: "num" }, number(shard.channels)),
      h("td", { class: "num" }, number(shard.consumers)),
      h("td", { class: "num" }, number(shard.queues)),
      h("td", { class: "num" }, number(shard.messages_ready)),
      h("td", { class: "num" }, number(shard.messages_unacknowledged)),
      h("td", { class: "num" }, number(shard.mailbox_depth)),
      h("td", { class: "num" }, turns));
  });
  return h("table", { class: "list shards", id: "shards" },
    h("thead", {}, h("tr", {}, ["Shard", "Busy", "Connections", "Channels", "Consumers", "Queues", "Ready", "Unacked", "Mailbox", "Loop turns"].map((label) => h("th", {}, label)))),
    h("tbody", {}, rows));
}

export function render(container, _params, whoami) {
  const rateChart = lineChart({ title: "Message rates", series: RATE_SERIES, unit: "/s" });
  const queuedChart = lineChart({ title: "Queued messages", series: QUEUED_SERIES });
  rateChart.element.id = "rates-chart";
  queuedChart.element.id = "queued-chart";
  const totals = h("div", { id: "totals" });
  const node = h("div", { id: "node" });
  const shards = h("div", { id: "shard-load" });
  const shardSection = section("Shards", shards);
  shardSection.hidden = true;
  const status = h("p", { class: "updated", id: "overview-status" });
  const range = select("chart-range", [["60", "Last minute"], ["300", "Last 5 minutes"], ["600", "Last 10 minutes"]], String(history.windowSeconds));
  range.addEventListener("change", () => {
    history.windowSeconds = Number(range.value);
    redraw(Date.now());
  });
  clear(container,
    h("div", { class: "page-title" }, h("h1", {}, "Overview"), status, h("label", { class: "inline range" }, "Charts: ", range)),
    totals,
    h("div", { class: "charts" }, queuedChart.element, rateChart.element),
    h("div", { class: "columns" }, section("Alarms and node", node), shardSection));
  const tags = [].concat(whoami.tags || []);
  const monitor = tags.includes("administrator") || tags.includes("monitoring");
  let rateKeys = RATE_SERIES;
  let busy = false;

  function redraw(at) {
    rateChart.update(history.rates, at, { windowSeconds: history.windowSeconds });
    queuedChart.update(history.queued, at, { windowSeconds: history.windowSeconds });
  }

  async function poll() {
    if (busy) return;
    busy = true;
    try {
      const [overview, nodes, health] = await Promise.all([
        get("/overview"),
        monitor ? get("/nodes").catch(() => null) : Promise.resolve(null),
        monitor ? Promise.resolve(null) : api("GET", "/health/checks/alarms", undefined, { raw: true }).then((reply) => reply.json),
      ]);
      const at = Date.now();
      const stats = overview.message_stats || {};
      const rates = {};
      for (const line of RATE_SERIES) {
        const details = stats[`${line.key}_details`];
        if (details) rates[line.key] = details.rate;
      }
      // Only the rates this broker reports get a line.
      const reported = RATE_SERIES.filter((line) => rates[line.key] !== undefined);
      if (reported.length && reported.length !== rateKeys.length) {
        rateKeys = reported;
        const replacement = lineChart({ title: "Message rates", series: reported, unit: "/s" });
        replacement.element.id = "rates-chart";
        rateChart.element.replaceWith(replacement.element);
        Object.assign(rateChart, replacement);
      }
      remember(history.rates, { at, values: rates });
      const queueTotals = overview.queue_totals || {};
      remember(history.queued, { at, values: {
        messages_ready: queueTotals.messages_ready || 0,
        messages_unacknowledged: queueTotals.messages_unacknowledged || 0,
        messages: queueTotals.messages || 0,
      } });
      redraw(at);
      clear(totals, totalsView(overview.object_totals || {}));
      clear(node, alarmView(nodes && nodes[0], health));
      if (Array.isArray(overview.shards)) {
        clear(shards, shardView(overview.shards));
        shardSection.hidden = false;
      }
      clear(status, `${overview.product_name || "SpateMQ"} ${overview.product_version || ""} · ${overview.node || ""} · updated ${new Date(at).toLocaleTimeString()}`);
      status.classList.remove("error-text");
    } catch (error) {
      clear(status, error.reason || error.message);
      status.classList.add("error-text");
    } finally {
      busy = false;
    }
  }

  poll();
  const timer = setInterval(poll, POLL_MS);
  return () => clearInterval(timer);
}
