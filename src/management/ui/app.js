// The web UI's shell: the login form, the tabs, and hash routing (#/queues/%2F/jobs) to the
// page modules. Each page is `render(container, params)` and may return a function that stops
// whatever it keeps running (a poll) when the user leaves it.

import { api, credentials, setCredentials, clearCredentials, onLoginFailed } from "/ui/api.js";
import { h, clear } from "/ui/dom.js";
import * as overview from "/ui/overview.js";
import * as connections from "/ui/connections.js";
import * as exchanges from "/ui/exchanges.js";
import * as queues from "/ui/queues.js";
import * as admin from "/ui/admin.js";
import * as policies from "/ui/policies.js";

/// [page, label, the tags that may use it (any management user when absent)], as RabbitMQ's
/// UI shows its Admin tab to administrators and policies to policymakers too.
const TABS = [
  ["overview", "Overview"],
  ["connections", "Connections"],
  ["channels", "Channels"],
  ["exchanges", "Exchanges"],
  ["queues", "Queues"],
  ["users", "Users", ["administrator"]],
  ["vhosts", "Virtual hosts", ["administrator"]],
  ["permissions", "Permissions", ["administrator"]],
  ["policies", "Policies", ["administrator", "policymaker"]],
];

function tabsFor(user) {
  const tags = [].concat(user.tags || []);
  return TABS.filter(([, , allowed]) => !allowed || allowed.some((tag) => tags.includes(tag)));
}

const PAGES = {
  overview: overview.render,
  connections: connections.renderConnections,
  channels: connections.renderChannels,
  exchanges: exchanges.render,
  queues: queues.render,
  users: admin.renderUsers,
  vhosts: admin.renderVhosts,
  permissions: admin.renderPermissions,
  policies: policies.render,
};

const root = document.getElementById("root");
let leave = null;
let whoami = null;

function showLogin(error) {
  if (leave) leave();
  leave = null;
  whoami = null;
  const user = h("input", { name: "username", type: "text", autocomplete: "username", required: true, autofocus: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password" });
  const failure = h("p", { class: "login-error", role: "alert", id: "login-error" }, error || "");
  const button = h("button", { type: "submit", id: "login-button" }, "Log in");
  const form = h("form", { class: "login", id: "login-form" },
    h("div", { class: "brand big" }, h("img", { src: "/ui/favicon.svg", alt: "" }), "SpateMQ"),
    h("label", { class: "field" }, h("span", {}, "Username"), user),
    h("label", { class: "field" }, h("span", {}, "Password"), password),
    failure, button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    clear(failure);
    const given = { user: user.value, password: password.value };
    try {
      whoami = await api("GET", "/whoami", undefined, { credentials: given });
      setCredentials(given.user, given.password);
      showApp();
    } catch (refusal) {
      clear(failure, refusal.reason || refusal.message);
    } finally {
      button.disabled = false;
    }
  });
  clear(root, h("div", { class: "login-page" }, form));
  user.focus();
}

function showApp() {
  const nav = h("nav", { class: "tabs" }, tabsFor(whoami).map(([key, label]) => h("a", { href: `#/${key}`, dataset: { tab: key } }, label)));
  const logout = h("button", { type: "button", class: "secondary small", id: "logout", onclick: () => {
    clearCredentials();
    location.hash = "";
    showLogin();
  } }, "Log out");
  const who = h("span", { class: "who" }, `${whoami.name}`, whoami.tags && whoami.tags.length ? h("small", {}, ` (${[].concat(whoami.tags).join(", ")})`) : null, " ", logout);
  const header = h("header", { class: "top" }, h("a", { class: "brand", href: "#/overview" }, h("img", { src: "/ui/favicon.svg", alt: "" }), "SpateMQ"), nav, who);
  const main = h("main", { id: "page" });
  clear(root, header, main);
  route();
}

function route() {
  if (!whoami) return;
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter((part) => part !== "").map(decodeURIComponent);
  const tab = PAGES[parts[0]] ? parts[0] : "overview";
  for (const link of document.querySelectorAll("nav.tabs a")) link.classList.toggle("active", link.dataset.tab === tab);
  if (leave) leave();
  // An error belongs to the page it happened on.
  for (const message of document.querySelectorAll("#messages .message.error")) message.remove();
  const main = document.getElementById("page");
  clear(main);
  main.dataset.page = tab;
  leave = PAGES[tab](main, parts.slice(1), whoami) || null;
}


window.addEventListener("hashchange", route);
onLoginFailed((failure) => showLogin(failure.reason));

async function start() {
  if (!credentials()) return showLogin();
  try {
    whoami = await api("GET", "/whoami");
    showApp();
  } catch (failure) {
    clearCredentials();
    showLogin(failure.reason || failure.message);
  }
}

start();
