// Policies: the list, and one form to create or edit (pattern, apply-to, priority, and the
// definition as key/value rows or as JSON), delete from the list.

import { api, enc } from "/ui/api.js";
import { h, clear, notify, attempt, confirmButton } from "/ui/dom.js";
import { pagedTable } from "/ui/table.js";
import { field, input, select, vhostSelect, keyValueEditor, form, valueOf } from "/ui/forms.js";

const KEYS = ["message-ttl", "expires", "max-length", "max-length-bytes", "overflow", "dead-letter-exchange", "dead-letter-routing-key", "delivery-limit", "alternate-exchange", "max-priority"];
const NUMERIC = ["message-ttl", "expires", "max-length", "max-length-bytes", "delivery-limit", "max-priority"];

function policyForm(onSaved) {
  const rows = keyValueEditor({ name: "definition", suggestions: KEYS, numericKeys: NUMERIC });
  const json = h("textarea", { name: "definition-json", rows: 4, placeholder: '{"max-length": 1000}', hidden: true });
  const mode = select("definition-mode", [["rows", "Key / value rows"], ["json", "JSON"]], "rows");
  mode.addEventListener("change", () => {
    // Carry what was typed over to the other editor.
    try {
      if (mode.value === "json") json.value = JSON.stringify(rows.value(), null, 1);
      else rows.set(JSON.parse(json.value || "{}"));
    } catch (error) {
      notify(error.message, "error");
    }
    json.hidden = mode.value !== "json";
    rows.element.hidden = mode.value === "json";
  });
  const element = form("policy", [
    h("div", { class: "row" },
      field("Virtual host", vhostSelect()),
      field("Name", input("name", { required: true })),
      field("Pattern", input("pattern", { required: true, placeholder: "^orders\\." })),
      field("Apply to", select("apply-to", [["all", "Exchanges and queues"], ["queues", "Queues"], ["exchanges", "Exchanges"]], "all")),
      field("Priority", input("priority", { type: "number", value: 0 }))),
    field("Definition", h("div", {}, mode, rows.element, json)),
  ], async (formElement) => {
    let definition;
    try {
      definition = mode.value === "json" ? JSON.parse(json.value || "{}") : rows.value();
    } catch (error) {
      notify(`Definition: ${error.message}`, "error");
      return;
    }
    const vhost = valueOf(formElement, "vhost");
    const name = valueOf(formElement, "name");
    const body = {
      pattern: valueOf(formElement, "pattern"),
      "apply-to": valueOf(formElement, "apply-to"),
      priority: Number(valueOf(formElement, "priority") || 0),
      definition,
    };
    if (await attempt(() => api("PUT", `/policies/${enc(vhost)}/${enc(name)}`, body), `Policy ${name} saved.`)) onSaved();
  }, "Save policy");

  function edit(policy) {
    const elements = element.elements;
    elements.vhost.value = policy.vhost;
    if (elements.vhost.value !== policy.vhost) elements.vhost.append(h("option", { value: policy.vhost, selected: true }, policy.vhost));
    elements.name.value = policy.name;
    elements.pattern.value = policy.pattern;
    elements["apply-to"].value = policy["apply-to"];
    elements.priority.value = policy.priority;
    rows.set(policy.definition);
    json.value = JSON.stringify(policy.definition, null, 1);
    element.closest("details").open = true;
    element.scrollIntoView({ block: "nearest" });
  }
  return { element, edit };
}

export function render(container) {
  let table = null;
  const editor = policyForm(() => table.reload());
  const remove = (policy) => confirmButton("Delete", `Delete policy ${policy.name}?`, () =>
    attempt(async () => {
      await api("DELETE", `/policies/${enc(policy.vhost)}/${enc(policy.name)}`);
      table.reload();
    }, `Policy ${policy.name} deleted.`));
  table = pagedTable({
    name: "policies",
    path: "/policies",
    columns: [
      { label: "Virtual host", sort: "vhost", value: (policy) => policy.vhost },
      { label: "Name", sort: "name", value: (policy) => policy.name },
      { label: "Pattern", value: (policy) => h("code", {}, policy.pattern) },
      { label: "Apply to", value: (policy) => policy["apply-to"] },
      { label: "Definition", value: (policy) => h("code", {}, JSON.stringify(policy.definition)) },
      { label: "Priority", sort: "priority", value: (policy) => String(policy.priority) },
      { label: "", value: (policy) => h("span", { class: "row-actions" }, h("button", { type: "button", class: "secondary small", onclick: () => editor.edit(policy) }, "Edit"), " ", remove(policy)) },
    ],
    empty: "No policies.",
  });
  clear(container,
    h("div", { class: "page-title" }, h("h1", {}, "Policies")),
    table.element,
    h("details", { class: "panel", open: true }, h("summary", {}, "Add or update a policy"), editor.element));
}
