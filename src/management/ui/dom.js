// Small helpers to build the page: elements, number formats, messages to the user.

const SVG = "http://www.w3.org/2000/svg";

function build(element, attributes, children) {
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name === "value" || name === "checked" || name === "selected") element[name] = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/// An HTML element: h("a", {href: "#/queues"}, "Queues").
export const h = (tag, attributes, ...children) => build(document.createElement(tag), attributes, children);

/// An SVG element.
export const s = (tag, attributes, ...children) => build(document.createElementNS(SVG, tag), attributes, children);

export function clear(element, ...children) {
  element.replaceChildren();
  return build(element, {}, children);
}

export function number(value) {
  if (value === undefined || value === null || Number.isNaN(value)) return "–";
  return Number(value).toLocaleString("en-US", { maximumFractionDigits: 1 });
}

export function rate(value) {
  if (value === undefined || value === null) return "–";
  return `${number(value)}/s`;
}

export function bytes(value) {
  if (value === undefined || value === null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let shown = Number(value);
  let unit = 0;
  while (shown >= 1024 && unit < units.length - 1) {
    shown /= 1024;
    unit += 1;
  }
  return `${shown.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function duration(milliseconds) {
  let seconds = Math.floor(milliseconds / 1000);
  const days = Math.floor(seconds / 86400);
  seconds -= days * 86400;
  const hours = Math.floor(seconds / 3600);
  seconds -= hours * 3600;
  const minutes = Math.floor(seconds / 60);
  if (days) return `${days}d ${hours}h`;
  if (hours) return `${hours}h ${minutes}m`;
  return `${minutes}m ${seconds - minutes * 60}s`;
}

/// A short-lived message at the top of the page; errors stay until clicked.
export function notify(text, kind = "ok") {
  const box = document.getElementById("messages");
  const message = h("div", { class: `message ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
  message.addEventListener("click", () => message.remove());
  box.append(message);
  if (kind !== "error") setTimeout(() => message.remove(), 4000);
  return message;
}

/// Runs `action` and reports its error (RabbitMQ's reason) to the user; true when it worked.
export async function attempt(action, success) {
  try {
    await action();
    if (success) notify(success);
    return true;
  } catch (error) {
    notify(error.reason || error.message, "error");
    return false;
  }
}

/// A button that asks once more ("Yes, delete") before `action`.
export function confirmButton(label, question, action) {
  const wrapper = h("span", { class: "confirm" });
  const ask = h("button", { type: "button", class: "danger", onclick: () => clear(wrapper, question, " ", yes, " ", no) }, label);
  const yes = h("button", { type: "button", class: "danger", onclick: () => action() }, `Yes, ${label.toLowerCase()}`);
  const no = h("button", { type: "button", class: "secondary", onclick: () => clear(wrapper, ask) }, "Cancel");
  return clear(wrapper, ask);
}

/// A titled section of a page.
export const section = (title, ...children) => h("section", { class: "panel" }, h("h2", {}, title), ...children);

/// A two-column table of facts.
export function facts(rows) {
  return h("table", { class: "facts" }, h("tbody", {}, rows.map(([label, value]) => h("tr", {}, h("th", {}, label), h("td", {}, value)))));
}

export const link = (href, text) => h("a", { href }, text);
