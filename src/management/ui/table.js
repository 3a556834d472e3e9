// A list of objects paged by the server (RabbitMQ's `page`, `page_size`, `name`, `use_regex`,
// `sort`, `sort_reverse`), so a broker with 10,000 queues sends the page one hundred at a time.
// It refreshes itself while it is on the page.

import { get, withQuery } from "/ui/api.js";
import { h, clear, number } from "/ui/dom.js";

const PAGE_SIZE = 100;
const REFRESH_MS = 5000;

/// `path`: the list's API path (e.g. "/queues/%2F"); `columns`: [{label, value(item),
/// sort (a dotted key) }]; `fields`: the `columns` query to ask for (fewer bytes).
export function pagedTable({ path, columns, fields, sort, empty = "Nothing here yet.", name = "list" }) {
  const state = { page: 1, filter: "", regex: false, sort: sort || "", reverse: false, loading: false, timer: null };
  const filter = h("input", { type: "search", placeholder: "Filter by name", class: "filter", name: `${name}-filter` });
  const regex = h("input", { type: "checkbox", name: `${name}-regex` });
  const status = h("span", { class: "page-status" });
  const pager = h("span", { class: "pager" });
  const body = h("tbody");
  const head = h("tr");
  const table = h("table", { class: "list", dataset: { list: name } }, h("thead", {}, head), body);
  const element = h(
    "div",
    { class: "paged" },
    h("div", { class: "toolbar" }, filter, h("label", { class: "inline" }, regex, " Regex"), status, pager),
    table,
  );

  let typing = null;
  filter.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      state.filter = filter.value;
      state.page = 1;
      load();
    }, 300);
  });
  regex.addEventListener("change", () => {
    state.regex = regex.checked;
    state.page = 1;
    load();
  });

  function drawHead() {
    clear(
      head,
      columns.map((column) => {
        if (!column.sort) return h("th", {}, column.label);
        const active = state.sort === column.sort;
        const arrow = active ? (state.reverse ? " ▼" : " ▲") : "";
        return h(
          "th",
          { class: "sortable", onclick: () => {
            state.reverse = active ? !state.reverse : false;
            state.sort = column.sort;
            drawHead();
            load();
          } },
          column.label + arrow,
        );
      }),
    );
  }

  function goTo(page) {
    state.page = page;
    load();
  }

  function drawPager(reply) {
    const pages = Math.max(1, reply.page_count);
    const select = h("input", { type: "number", min: 1, max: pages, value: reply.page, class: "page-input", name: `${name}-page` });
    select.addEventListener("change", () => goTo(Math.min(pages, Math.max(1, Number(select.value) || 1))));
    clear(
      pager,
      h("button", { type: "button", class: "secondary", disabled: reply.page <= 1, onclick: () => goTo(reply.page - 1), dataset: { pager: "previous" } }, "‹ Previous"),
      " Page ", select, ` of ${pages} `,
      h("button", { type: "button", class: "secondary", disabled: reply.page >= pages, onclick: () => goTo(reply.page + 1), dataset: { pager: "next" } }, "Next ›"),
    );
    const filtered = reply.filtered_count !== reply.total_count ? ` (filtered from ${number(reply.total_count)})` : "";
    clear(status, `${number(reply.item_count)} shown of ${number(reply.filtered_count)}${filtered}`);
    element.dataset.page = String(reply.page);
    element.dataset.pageCount = String(pages);
    element.dataset.total = String(reply.filtered_count);
  }

  async function load() {
    if (state.loading) return;
    state.loading = true;
    const query = {
      page: state.page,
      page_size: PAGE_SIZE,
      name: state.filter,
      use_regex: state.regex ? "true" : "",
      sort: state.sort,
      sort_reverse: state.reverse ? "true" : "",
      columns: fields ? fields.join(",") : "",
    };
    try {
      const reply = await get(withQuery(path, query));
      drawPager(reply);
      clear(body, reply.items.length ? reply.items.map((item) => h("tr", {}, columns.map((column) => h("td", {}, column.value(item))))) : h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, empty)));
      element.classList.remove("failed");
    } catch (error) {
      if (error.error === "page_out_of_range" && state.page > 1) {
        state.page = 1;
        state.loading = false;
        return load();
      }
      clear(status, h("span", { class: "error-text" }, error.reason || error.message));
      element.classList.add("failed");
    } finally {
      state.loading = false;
    }
  }

  drawHead();
  load();
  state.timer = setInterval(() => {
    if (!element.isConnected) clearInterval(state.timer);
    else load();
  }, REFRESH_MS);
  return { element, reload: load };
}
