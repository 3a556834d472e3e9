// Queues: the paged list (filter, sort, 100 a page), a form to add one, and a queue's page:
// its counts (refreshed), policy, bindings, publishing to it, getting messages, purge, delete.

import { api, get, enc } from "/ui/api.js";
import { h, clear, link, number, rate, bytes, attempt, confirmButton, section, facts } from "/ui/dom.js";
import { pagedTable } from "/ui/table.js";
import { field, input, select, checkbox, vhostSelect, keyValueEditor, form, valueOf, checked } from "/ui/forms.js";
import { publishForm, exchangeHref } from "/ui/exchanges.js";

const REFRESH_MS = 5000;

const ARGUMENT_KEYS = ["x-message-ttl", "x-expires", "x-max-length", "x-max-length-bytes", "x-overflow", "x-dead-letter-exchange", "x-dead-letter-routing-key", "x-max-priority", "x-delivery-limit", "x-queue-type"];
const NUMERIC_ARGUMENTS = ["x-message-ttl", "x-expires", "x-max-length", "x-max-length-bytes", "x-max-priority", "x-delivery-limit"];

export const queueHref = (vhost, name) => `#/queues/${enc(vhost)}/${enc(name)}`;

const stat = (item, key) => (item.message_stats && item.message_stats[`${key}_details`] ? item.message_stats[`${key}_details`].rate : 0);

function addForm(onAdded) {
  const argumentsEditor = keyValueEditor({ name: "queue-arguments", suggestions: ARGUMENT_KEYS, numericKeys: NUMERIC_ARGUMENTS });
  return form("add-queue", [
    h("div", { class: "row" },
      field("Virtual host", vhostSelect()),
      field("Name", input("name", { required: true })),
      field("Durability", select("durable", [["true", "Durable"], ["false", "Transient"]], "true"))),
    h("label", { class: "inline" }, checkbox("auto_delete"), " Auto delete"),
    field("Arguments", argumentsEditor.element),
  ], async (element) => {
    const argumentValues = argumentsEditor.valueOrNotify();
    if (argumentValues === null) return;
    const name = valueOf(element, "name");
    const vhost = valueOf(element, "vhost");
    const done = await attempt(() => api("PUT", `/queues/${enc(vhost)}/${enc(name)}`, {
      durable: valueOf(element, "durable") === "true",
      auto_delete: checked(element, "auto_delete"),
      arguments: argumentValues,
    }), `Queue ${name} added.`);
    if (done) {
      element.elements.name.value = "";
      onAdded();
    }
  }, "Add queue");
}

function renderList(container) {
  const table = pagedTable({
    name: "queues",
    path: "/queues",
    fields: ["name", "vhost", "type", "state", "policy", "consumers", "messages", "messages_ready", "messages_unacknowledged", "message_stats", "durable", "auto_delete", "exclusive"],
    columns: [
      { label: "Virtual host", sort: "vhost", value: (item) => item.vhost },
      { label: "Name", sort: "name", value: (item) => link(queueHref(item.vhost, item.name), item.name) },
      { label: "Type", value: (item) => item.type },
      { label: "Features", value: (item) => [item.durable ? "D" : "", item.auto_delete ? "AD" : "", item.exclusive ? "Excl" : ""].filter(Boolean).join(" ") },
      { label: "Policy", sort: "policy", value: (item) => item.policy || "" },
      { label: "Consumers", sort: "consumers", value: (item) => number(item.consumers) },
      { label: "Ready", sort: "messages_ready", value: (item) => number(item.messages_ready) },
      { label: "Unacked", sort: "messages_unacknowledged", value: (item) => number(item.messages_unacknowledged) },
      { label: "Total", sort: "messages", value: (item) => h("span", { dataset: { messages: item.messages } }, number(item.messages)) },
      { label: "Incoming", value: (item) => rate(stat(item, "publish")) },
      { label: "Deliver / get", value: (item) => rate(stat(item, "deliver_get")) },
      { label: "Ack", value: (item) => rate(stat(item, "ack")) },
    ],
    empty: "No queues.",
  });
  clear(container,
    h("div", { class: "page-title" }, h("h1", {}, "Queues")),
    table.element,
    h("details", { class: "panel" }, h("summary", {}, "Add a new queue"), addForm(() => table.reload())));
}

function messageView(message, index) {
  return h("div", { class: "got-message", dataset: { message: index } },
    h("h4", {}, `Message ${index + 1}`),
    facts([
      ["Exchange", message.exchange === "" ? "(AMQP default)" : message.exchange],
      ["Routing key", message.routing_key],
      ["Redelivered", String(message.redelivered)],
      ["Properties", JSON.stringify(message.properties)],
      ["Payload", h("pre", { class: "payload" }, message.payload)],
      ["Encoding", `${message.payload_encoding}, ${number(message.payload_bytes)} bytes`],
    ]));
}

function getForm(vhost, name) {
  const results = h("div", { class: "got" });
  const element = form("get", [
    h("div", { class: "row" },
      field("Ack mode", select("ackmode", [["ack_requeue_true", "Nack message requeue true"], ["ack_requeue_false", "Automatic ack"], ["reject_requeue_true", "Reject requeue true"], ["reject_requeue_false", "Reject requeue false"]], "ack_requeue_true")),
      field("Encoding", select("encoding", [["auto", "Auto string / base64"], ["base64", "base64"]], "auto")),
      field("Messages", input("count", { type: "number", min: 1, max: 1000, value: 1 })),
      field("Truncate at (bytes)", input("truncate", { type: "number", min: 0, value: 50000 }))),
  ], async (formElement) => {
    await attempt(async () => {
      const messages = await api("POST", `/queues/${enc(vhost)}/${enc(name)}/get`, {
        count: Number(valueOf(formElement, "count")),
        ackmode: valueOf(formElement, "ackmode"),
        encoding: valueOf(formElement, "encoding"),
        truncate: Number(valueOf(formElement, "truncate")),
      });
      clear(results, messages.length ? messages.map(messageView) : h("p", { class: "muted" }, "Queue is empty."));
    });
  }, "Get message(s)");
  return h("div", {}, element, results);
}

function renderOne(container, vhost, name) {
  const details = h("div", { id: "queue-details" }, "Loading…");
  const bindings = h("div");
  const base = `/queues/${enc(vhost)}/${enc(name)}`;
  clear(container,
    h("div", { class: "page-title" }, h("h1", {}, `Queue ${name}`), h("span", { class: "muted" }, `in virtual host ${vhost}`)),
    section("Details", details),
    section("Bindings", bindings),
    section("Publish message", h("p", { class: "muted" }, "Published to the default exchange with the queue's name as routing key."), publishForm(vhost, "amq.default", name, () => refresh())),
    section("Get messages", getForm(vhost, name)),
    section("Purge", confirmButton("Purge", "Remove every ready message?", () =>
      attempt(async () => {
        await api("DELETE", `${base}/contents`);
        refresh();
      }, `Queue ${name} purged.`))),
    section("Delete", confirmButton("Delete", "Delete this queue and its messages?", () =>
      attempt(async () => {
        await api("DELETE", base);
        location.hash = "#/queues";
      }, `Queue ${name} deleted.`))));

  let busy = false;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const queue = await get(base);
      const stats = queue.message_stats || {};
      clear(details, facts([
        ["Type", queue.type],
        ["Features", [queue.durable ? "durable" : "transient", queue.auto_delete ? "auto-delete" : "", queue.exclusive ? "exclusive" : ""].filter(Boolean).join(", ")],
        ["Arguments", JSON.stringify(queue.arguments)],
        ["Policy", h("span", { id: "queue-policy" }, queue.policy || "none")],
        ["Operator policy", queue.operator_policy || "none"],
        ["Effective policy definition", h("code", { id: "queue-effective-policy" }, JSON.stringify(queue.effective_policy_definition || {}))],
        ["Consumers", number(queue.consumers)],
        ["Ready", h("span", { id: "queue-ready" }, number(queue.messages_ready))],
        ["Unacked", number(queue.messages_unacknowledged)],
        ["Total", h("span", { id: "queue-messages", dataset: { messages: queue.messages } }, number(queue.messages))],
        ["Ready bytes", bytes(queue.message_bytes_ready)],
        ["Rates", `publish ${rate((stats.publish_details || {}).rate)} · deliver/get ${rate((stats.deliver_get_details || {}).rate)} · ack ${rate((stats.ack_details || {}).rate)}`],
      ]));
    } catch (error) {
      clear(details, h("p", { class: "error-text" }, error.reason || error.message));
    } finally {
      busy = false;
    }
  }
  refresh();
  get(`${base}/bindings`)
    .then((items) => clear(bindings, h("table", { class: "list" },
      h("thead", {}, h("tr", {}, h("th", {}, "From"), h("th", {}, "Routing key"), h("th", {}, "Arguments"))),
      h("tbody", {}, items.map((binding) => h("tr", {},
        h("td", {}, binding.source === "" ? "(AMQP default)" : link(exchangeHref(vhost, binding.source), binding.source)),
        h("td", {}, binding.routing_key),
        h("td", {}, JSON.stringify(binding.arguments))))))))
    .catch((error) => clear(bindings, h("p", { class: "error-text" }, error.reason)));
  const timer = setInterval(refresh, REFRESH_MS);
  return () => clearInterval(timer);
}

export function render(container, params) {
  if (params.length >= 2) return renderOne(container, params[0], params[1]);
  return renderList(container);
}
