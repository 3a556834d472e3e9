// Exchanges: the paged list, a form to add one, and an exchange's page (its bindings,
// publishing a message to it, deleting it). The default exchange is `amq.default` in paths.

import { api, get, enc } from "/ui/api.js";
import { h, clear, link, notify, attempt, confirmButton, section, facts } from "/ui/dom.js";
import { pagedTable } from "/ui/table.js";
import { field, input, select, checkbox, vhostSelect, keyValueEditor, form, valueOf, checked } from "/ui/forms.js";

const pathName = (name) => (name === "" ? "amq.default" : name);
const shownName = (name) => (name === "" ? "(AMQP default)" : name);

export function exchangeHref(vhost, name) {
  return `#/exchanges/${enc(vhost)}/${enc(pathName(name))}`;
}

const PROPERTY_KEYS = ["content_type", "content_encoding", "correlation_id", "reply_to", "expiration", "message_id", "type", "user_id", "app_id", "priority"];

/// A form that publishes to `exchange` (path spelling) of `vhost`; `onPublished` runs after.
export function publishForm(vhost, exchange, routingKey = "", onPublished = () => {}) {
  const headers = keyValueEditor({ name: "headers" });
  const properties = keyValueEditor({ name: "properties", suggestions: PROPERTY_KEYS, numericKeys: ["priority"] });
  return form("publish", [
    field("Routing key", input("routing_key", { value: routingKey })),
    field("Delivery mode", select("delivery_mode", [["1", "1 - Non-persistent"], ["2", "2 - Persistent"]], "1")),
    field("Headers", headers.element),
    field("Properties", properties.element),
    field("Payload", h("textarea", { name: "payload", rows: 4 })),
  ], async (element) => {
    let props;
    try {
      props = { ...properties.value(), delivery_mode: Number(valueOf(element, "delivery_mode")) };
      const headerValues = headers.value();
      if (Object.keys(headerValues).length) props.headers = headerValues;
    } catch (error) {
      notify(error.message, "error");
      return;
    }
    await attempt(async () => {
      const reply = await api("POST", `/exchanges/${enc(vhost)}/${enc(exchange)}/publish`, {
        routing_key: valueOf(element, "routing_key"),
        payload: valueOf(element, "payload"),
        payload_encoding: "string",
        properties: props,
      });
      if (reply && reply.routed) notify("Message published.");
      else notify("Message published, but not routed to any queue.", "warn");
      onPublished();
    });
  }, "Publish message");
}

function addForm(onAdded) {
  const argumentsEditor = keyValueEditor({ name: "exchange-arguments", suggestions: ["alternate-exchange"] });
  return form("add-exchange", [
    h("div", { class: "row" },
      field("Virtual host", vhostSelect()),
      field("Name", input("name", { required: true })),
      field("Type", select("type", ["direct", "fanout", "topic", "headers"], "direct"))),
    h("div", { class: "row" },
      h("label", { class: "inline" }, checkbox("durable", true), " Durable"),
      h("label", { class: "inline" }, checkbox("auto_delete"), " Auto delete"),
      h("label", { class: "inline" }, checkbox("internal"), " Internal")),
    field("Arguments", argumentsEditor.element),
  ], async (element) => {
    const argumentValues = argumentsEditor.valueOrNotify();
    if (argumentValues === null) return;
    const name = valueOf(element, "name");
    const vhost = valueOf(element, "vhost");
    const done = await attempt(() => api("PUT", `/exchanges/${enc(vhost)}/${enc(name)}`, {
      type: valueOf(element, "type"),
      durable: checked(element, "durable"),
      auto_delete: checked(element, "auto_delete"),
      internal: checked(element, "internal"),
      arguments: argumentValues,
    }), `Exchange ${name} added.`);
    if (done) {
      element.reset();
      onAdded();
    }
  }, "Add exchange");
}

function renderList(container) {
  const table = pagedTable({
    name: "exchanges",
    path: "/exchanges",
    fields: ["name", "vhost", "type", "durable", "auto_delete", "internal", "policy"],
    columns: [
      { label: "Virtual host", sort: "vhost", value: (item) => item.vhost },
      { label: "Name", sort: "name", value: (item) => link(exchangeHref(item.vhost, item.name), shownName(item.name)) },
      { label: "Type", sort: "type", value: (item) => item.type },
      { label: "Features", value: (item) => [item.durable ? "D" : "", item.auto_delete ? "AD" : "", item.internal ? "I" : ""].filter(Boolean).join(" ") },
      { label: "Policy", value: (item) => item.policy || "" },
    ],
  });
  clear(container,
    h("div", { class: "page-title" }, h("h1", {}, "Exchanges")),
    table.element,
    h("details", { class: "panel" }, h("summary", {}, "Add a new exchange"), addForm(() => table.reload())));
}

function renderOne(container, vhost, name) {
  const details = h("div", {}, "Loading…");
  const bindings = h("div");
  const isDefault = name === "amq.default";
  clear(container,
    h("div", { class: "page-title" }, h("h1", {}, `Exchange ${isDefault ? "(AMQP default)" : name}`), h("span", { class: "muted" }, `in virtual host ${vhost}`)),
    section("Details", details),
    section("Bindings from this exchange", bindings),
    section("Publish message", publishForm(vhost, name)),
    isDefault || name.startsWith("amq.") ? null : section("Delete this exchange", confirmButton("Delete", "Delete this exchange?", () =>
      attempt(async () => {
        await api("DELETE", `/exchanges/${enc(vhost)}/${enc(name)}`);
        location.hash = "#/exchanges";
      }, `Exchange ${name} deleted.`))));
  get(`/exchanges/${enc(vhost)}/${enc(name)}`)
    .then((exchange) => clear(details, facts([
      ["Type", exchange.type],
      ["Durable", String(exchange.durable)],
      ["Auto delete", String(exchange.auto_delete)],
      ["Internal", String(exchange.internal)],
      ["Policy", exchange.policy || ""],
      ["Arguments", JSON.stringify(exchange.arguments)],
    ])))
    .catch((error) => clear(details, h("p", { class: "error-text" }, error.reason)));
  if (!isDefault) {
    get(`/exchanges/${enc(vhost)}/${enc(name)}/bindings/source`)
      .then((items) => clear(bindings, items.length
        ? h("table", { class: "list" }, h("thead", {}, h("tr", {}, h("th", {}, "To"), h("th", {}, "Routing key"), h("th", {}, "Arguments"))),
            h("tbody", {}, items.map((binding) => h("tr", {},
              h("td", {}, binding.destination_type === "queue" ? link(`#/queues/${enc(vhost)}/${enc(binding.destination)}`, binding.destination) : link(exchangeHref(vhost, binding.destination), binding.destination)),
              h("td", {}, binding.routing_key),
              h("td", {}, JSON.stringify(binding.arguments))))))
        : h("p", { class: "muted" }, "No bindings.")))
      .catch((error) => clear(bindings, h("p", { class: "error-text" }, error.reason)));
  } else {
    clear(bindings, h("p", { class: "muted" }, "The default exchange routes to the queue named by the routing key."));
  }
}

export function render(container, params) {
  if (params.length >= 2) return renderOne(container, params[0], params[1]);
  return renderList(container);
}
