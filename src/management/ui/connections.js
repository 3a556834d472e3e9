// Connections (with close) and channels, both paged by the server.

import { api, enc } from "/ui/api.js";
import { h, clear, number, attempt, confirmButton } from "/ui/dom.js";
import { pagedTable } from "/ui/table.js";

export function renderConnections(container) {
  let table = null;
  const close = (connection) =>
    confirmButton("Close", "Close this connection?", () =>
      attempt(async () => {
        await api("DELETE", `/connections/${enc(connection.name)}`, undefined, { headers: { "X-Reason": "Closed via management UI" } });
        table.reload();
      }, `Connection ${connection.name} closed`));
  table = pagedTable({
    name: "connections",
    path: "/connections",
    columns: [
      { label: "Name", sort: "name", value: (item) => item.name },
      { label: "User", sort: "user", value: (item) => item.user },
      { label: "Virtual host", sort: "vhost", value: (item) => item.vhost },
      { label: "Protocol", value: (item) => `${item.protocol}${item.ssl ? " (TLS)" : ""}` },
      { label: "Channels", sort: "channels", value: (item) => number(item.channels) },
      { label: "Shard", sort: "shard", value: (item) => (item.shard === undefined ? "–" : String(item.shard)) },
      { label: "State", value: (item) => item.state },
      { label: "", value: (item) => close(item) },
    ],
    empty: "No connections.",
  });
  clear(container, h("div", { class: "page-title" }, h("h1", {}, "Connections")), table.element);
}

export function renderChannels(container) {
  const table = pagedTable({
    name: "channels",
    path: "/channels",
    columns: [
      { label: "Channel", sort: "name", value: (item) => item.name },
      { label: "User", sort: "user", value: (item) => item.user },
      { label: "Virtual host", sort: "vhost", value: (item) => item.vhost },
      { label: "Mode", value: (item) => (item.confirm ? "confirm" : item.transactional ? "transactional" : "") },
      { label: "Prefetch", sort: "prefetch_count", value: (item) => number(item.prefetch_count) },
      { label: "Unacked", sort: "messages_unacknowledged", value: (item) => number(item.messages_unacknowledged) },
      { label: "Consumers", sort: "consumer_count", value: (item) => number(item.consumer_count) },
    ],
    empty: "No channels.",
  });
  clear(container, h("div", { class: "page-title" }, h("h1", {}, "Channels")), table.element);
}
