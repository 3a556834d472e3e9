// Form parts shared by the pages: labelled fields, a vhost picker, and key/value rows for
// arguments, headers and policy definitions (each value typed: string, number, boolean, JSON).

import { get } from "/ui/api.js";
import { h, clear, notify } from "/ui/dom.js";

/// A labelled field.
export const field = (label, input, hint) => h("label", { class: "field" }, h("span", {}, label), input, hint ? h("small", {}, hint) : null);

export const input = (name, attributes = {}) => h("input", { name, type: "text", ...attributes });

export function select(name, options, value) {
  return h("select", { name }, options.map((option) => {
    const [key, label] = Array.isArray(option) ? option : [option, option];
    return h("option", { value: key, selected: key === value }, label);
  }));
}

export const checkbox = (name, checked = false) => h("input", { type: "checkbox", name, checked });

/// A vhost picker filled from /api/vhosts (names only).
export function vhostSelect(name = "vhost", chosen = "/") {
  const picker = h("select", { name }, h("option", { value: chosen }, chosen));
  get("/vhosts?columns=name")
    .then((vhosts) => {
      clear(picker, vhosts.map((vhost) => h("option", { value: vhost.name, selected: vhost.name === chosen }, vhost.name)));
    })
    .catch(() => {});
  return picker;
}

function guessType(key, numericKeys) {
  return numericKeys.includes(key) ? "number" : "string";
}

/// Key/value rows; `numericKeys` get the number type when chosen; `suggestions` are offered
/// as one-click keys. `value()` is the object, or throws an Error naming the bad row.
export function keyValueEditor({ name, suggestions = [], numericKeys = [], initial = {} }) {
  const rows = h("div", { class: "kv-rows" });
  const listId = `${name}-keys`;
  const datalist = h("datalist", { id: listId }, suggestions.map((key) => h("option", { value: key })));

  function addRow(key = "", value = "", type) {
    const chosenType = type || (typeof value === "number" ? "number" : typeof value === "boolean" ? "boolean" : typeof value === "object" && value !== null ? "json" : guessType(key, numericKeys));
    const keyInput = h("input", { type: "text", class: "kv-key", placeholder: "key", list: listId, value: key, name: `${name}-key` });
    const valueInput = h("input", { type: "text", class: "kv-value", placeholder: "value", name: `${name}-value`, value: typeof value === "object" && value !== null ? JSON.stringify(value) : String(value) });
    const typeSelect = select(`${name}-type`, ["string", "number", "boolean", "json"], chosenType);
    keyInput.addEventListener("change", () => {
      if (numericKeys.includes(keyInput.value)) typeSelect.value = "number";
    });
    const row = h("div", { class: "kv-row" }, keyInput, h("span", { class: "kv-equals" }, "="), valueInput, typeSelect,
      h("button", { type: "button", class: "secondary small", title: "Remove", onclick: () => row.remove() }, "×"));
    rows.append(row);
    return row;
  }

  for (const [key, value] of Object.entries(initial)) addRow(key, value);
  if (!rows.children.length) addRow();

  const quick = suggestions.length
    ? h("div", { class: "kv-suggestions" }, "Add: ", suggestions.map((key) => h("button", { type: "button", class: "link", onclick: () => {
        const emptyRow = [...rows.children].find((row) => !row.querySelector(".kv-key").value);
        const row = emptyRow || addRow();
        row.querySelector(".kv-key").value = key;
        row.querySelector("select").value = guessType(key, numericKeys);
        row.querySelector(".kv-value").focus();
      } }, key)))
    : null;

  const element = h("div", { class: "kv" }, datalist, rows, h("button", { type: "button", class: "secondary small", onclick: () => addRow() }, "+ Row"), quick);

  function value() {
    const out = {};
    for (const row of rows.children) {
      const key = row.querySelector(".kv-key").value.trim();
      const text = row.querySelector(".kv-value").value;
      const type = row.querySelector("select").value;
      if (!key) continue;
      if (type === "number") {
        if (text.trim() === "" || Number.isNaN(Number(text))) throw new Error(`${key}: "${text}" is not a number`);
        out[key] = Number(text);
      } else if (type === "boolean") {
        if (!["true", "false"].includes(text.trim())) throw new Error(`${key}: a boolean is true or false`);
        out[key] = text.trim() === "true";
      } else if (type === "json") {
        try {
          out[key] = JSON.parse(text);
        } catch {
          throw new Error(`${key}: not JSON`);
        }
      } else {
        out[key] = text;
      }
    }
    return out;
  }

  function set(object) {
    rows.replaceChildren();
    for (const [key, item] of Object.entries(object || {})) addRow(key, item);
    if (!rows.children.length) addRow();
  }

  // The value, or null once the user was told what is wrong with it.
  function valueOrNotify() {
    try {
      return value();
    } catch (error) {
      notify(error.message, "error");
      return null;
    }
  }

  return { element, value, valueOrNotify, set };
}

/// A form whose submit runs `action(form)`; the button is disabled while it runs.
export function form(name, children, action, submitLabel) {
  const button = h("button", { type: "submit" }, submitLabel);
  const element = h("form", { class: "form", dataset: { form: name } }, children, h("div", { class: "actions" }, button));
  element.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    try {
      await action(element);
    } finally {
      button.disabled = false;
    }
  });
  return element;
}

/// A form field's value by name.
export const valueOf = (form, name) => form.elements[name].value;
export const checked = (form, name) => form.elements[name].checked;
