// Users, virtual hosts and permissions (administrators only, as in RabbitMQ).

import { api, get, enc } from "/ui/api.js";
import { h, clear, number, attempt, confirmButton } from "/ui/dom.js";
import { pagedTable } from "/ui/table.js";
import { field, input, vhostSelect, form, valueOf } from "/ui/forms.js";

const TAGS = ["administrator", "monitoring", "policymaker", "management"];

const title = (text) => h("div", { class: "page-title" }, h("h1", {}, text));

function tagsText(tags) {
  return Array.isArray(tags) ? tags.join(", ") : tags || "";
}

export function renderUsers(container) {
  let table = null;
  const remove = (user) => confirmButton("Delete", `Delete user ${user.name}?`, () =>
    attempt(async () => {
      await api("DELETE", `/users/${enc(user.name)}`);
      table.reload();
    }, `User ${user.name} deleted.`));
  table = pagedTable({
    name: "users",
    path: "/users",
    fields: ["name", "tags"],
    columns: [
      { label: "Name", sort: "name", value: (user) => user.name },
      { label: "Tags", value: (user) => tagsText(user.tags) },
      { label: "", value: (user) => remove(user) },
    ],
  });
  const tags = input("tags", { placeholder: "administrator, monitoring, …" });
  const addTag = (tag) => {
    const current = tags.value.split(",").map((part) => part.trim()).filter(Boolean);
    if (!current.includes(tag)) current.push(tag);
    tags.value = current.join(", ");
  };
  const add = form("add-user", [
    h("div", { class: "row" },
      field("Username", input("name", { required: true, autocomplete: "off" })),
      field("Password", input("password", { type: "password", autocomplete: "new-password" }), "Left empty for an existing user: the password stays.")),
    field("Tags", tags),
    h("div", { class: "kv-suggestions" }, "Set: ", TAGS.map((tag) => h("button", { type: "button", class: "link", onclick: () => addTag(tag) }, tag))),
  ], async (element) => {
    const name = valueOf(element, "name");
    const body = { tags: valueOf(element, "tags").split(",").map((part) => part.trim()).filter(Boolean).join(",") };
    if (valueOf(element, "password")) body.password = valueOf(element, "password");
    if (await attempt(() => api("PUT", `/users/${enc(name)}`, body), `User ${name} saved.`)) {
      element.reset();
      table.reload();
    }
  }, "Add / update user");
  clear(container, title("Users"), table.element, h("details", { class: "panel", open: true }, h("summary", {}, "Add or update a user"), add));
}

export function renderVhosts(container) {
  let table = null;
  const remove = (vhost) => confirmButton("Delete", `Delete virtual host ${vhost.name} and everything in it?`, () =>
    attempt(async () => {
      await api("DELETE", `/vhosts/${enc(vhost.name)}`);
      table.reload();
    }, `Virtual host ${vhost.name} deleted.`));
  table = pagedTable({
    name: "vhosts",
    path: "/vhosts",
    columns: [
      { label: "Name", sort: "name", value: (vhost) => vhost.name },
      { label: "Ready", sort: "messages_ready", value: (vhost) => number(vhost.messages_ready) },
      { label: "Unacked", sort: "messages_unacknowledged", value: (vhost) => number(vhost.messages_unacknowledged) },
      { label: "Total", sort: "messages", value: (vhost) => number(vhost.messages) },
      { label: "", value: (vhost) => remove(vhost) },
    ],
  });
  const add = form("add-vhost", [field("Name", input("name", { required: true }))], async (element) => {
    const name = valueOf(element, "name");
    if (await attempt(() => api("PUT", `/vhosts/${enc(name)}`, {}), `Virtual host ${name} added.`)) {
      element.reset();
      table.reload();
    }
  }, "Add virtual host");
  clear(container, title("Virtual hosts"), table.element, h("details", { class: "panel", open: true }, h("summary", {}, "Add a virtual host"), add));
}

function userSelect() {
  const picker = h("select", { name: "user" });
  get("/users?columns=name")
    .then((users) => clear(picker, users.map((user) => h("option", { value: user.name }, user.name))))
    .catch(() => {});
  return picker;
}

export function renderPermissions(container) {
  let table = null;
  const clearButton = (row) => confirmButton("Clear", `Clear ${row.user}'s permissions in ${row.vhost}?`, () =>
    attempt(async () => {
      await api("DELETE", `/permissions/${enc(row.vhost)}/${enc(row.user)}`);
      table.reload();
    }, `Permissions of ${row.user} in ${row.vhost} cleared.`));
  table = pagedTable({
    name: "permissions",
    path: "/permissions",
    sort: "user",
    columns: [
      { label: "User", sort: "user", value: (row) => row.user },
      { label: "Virtual host", sort: "vhost", value: (row) => row.vhost },
      { label: "Configure", value: (row) => h("code", {}, row.configure) },
      { label: "Write", value: (row) => h("code", {}, row.write) },
      { label: "Read", value: (row) => h("code", {}, row.read) },
      { label: "", value: (row) => clearButton(row) },
    ],
  });
  const set = form("set-permissions", [
    h("div", { class: "row" }, field("User", userSelect()), field("Virtual host", vhostSelect())),
    h("div", { class: "row" },
      field("Configure regexp", input("configure", { value: ".*" })),
      field("Write regexp", input("write", { value: ".*" })),
      field("Read regexp", input("read", { value: ".*" }))),
  ], async (element) => {
    const user = valueOf(element, "user");
    const vhost = valueOf(element, "vhost");
    const body = { configure: valueOf(element, "configure"), write: valueOf(element, "write"), read: valueOf(element, "read") };
    if (await attempt(() => api("PUT", `/permissions/${enc(vhost)}/${enc(user)}`, body), `Permissions of ${user} in ${vhost} set.`)) table.reload();
  }, "Set permission");
  clear(container, title("Permissions"), table.element, h("details", { class: "panel", open: true }, h("summary", {}, "Set permissions"), set));
}
