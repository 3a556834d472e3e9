// A line chart drawn as inline SVG: a time window ending now, one line per series, a legend
// with each series' latest value. Samples are kept by the caller; the chart only draws them.

import { h, s, clear, number } from "/ui/dom.js";

const WIDTH = 640;
const HEIGHT = 200;
const LEFT = 48;
const RIGHT = 8;
const TOP = 10;
const BOTTOM = 22;

/// The smallest of 1, 2, 5 × 10^n at or above `value`.
function niceCeiling(value) {
  if (value <= 1) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

/// `series`: [{key, label, color}]; `unit` follows values in the legend ("/s" or "").
export function lineChart({ title, series, unit = "", windowSeconds = 60, gapSeconds = 15 }) {
  const svg = s("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart", role: "img", "aria-label": title });
  const legend = h("div", { class: "legend" });
  const element = h("div", { class: "chart-box" }, h("h3", {}, title), svg, legend);

  /// `options.windowSeconds` changes the time shown.
  function update(samples, now = Date.now(), options = {}) {
    if (options.windowSeconds) windowSeconds = options.windowSeconds;
    const start = now - windowSeconds * 1000;
    const visible = samples.filter((sample) => sample.at >= start);
    const highest = Math.max(0, ...visible.flatMap((sample) => series.map((line) => sample.values[line.key] || 0)));
    const top = niceCeiling(highest);
    const plotWidth = WIDTH - LEFT - RIGHT;
    const plotHeight = HEIGHT - TOP - BOTTOM;
    const x = (at) => LEFT + ((at - start) / (windowSeconds * 1000)) * plotWidth;
    const y = (value) => TOP + plotHeight - (value / top) * plotHeight;
    const grid = [];
    for (let step = 0; step <= 4; step += 1) {
      const value = (top / 4) * step;
      grid.push(s("line", { x1: LEFT, x2: WIDTH - RIGHT, y1: y(value), y2: y(value), class: "grid" }));
      grid.push(s("text", { x: LEFT - 6, y: y(value) + 4, class: "axis", "text-anchor": "end" }, number(value)));
    }
    // Five time labels at most: every 15 s for a minute, every minute for five, and so on.
    const tick = windowSeconds <= 60 ? 15 : Math.ceil(windowSeconds / 300) * 60;
    for (let back = 0; back <= windowSeconds; back += tick) {
      const label = back === 0 ? "now" : back < 60 ? `-${back}s` : `-${back / 60}m`;
      grid.push(s("text", { x: x(now - back * 1000), y: HEIGHT - 6, class: "axis", "text-anchor": back === 0 ? "end" : back === windowSeconds ? "start" : "middle" }, label));
    }
    const lines = series.map((line) => {
      // A gap in the samples (the page was elsewhere) breaks the line.
      const runs = [[]];
      let previous = null;
      for (const sample of visible) {
        if (previous && sample.at - previous.at > gapSeconds * 1000) runs.push([]);
        runs[runs.length - 1].push(`${x(sample.at).toFixed(1)},${y(sample.values[line.key] || 0).toFixed(1)}`);
        previous = sample;
      }
      return runs
        .filter((run) => run.length > 0)
        .map((run) =>
          s("polyline", { points: run.join(" "), fill: "none", stroke: line.color, "stroke-width": 2, "data-series": line.key }),
        );
    });
    clear(svg, grid, lines);
    const latest = visible.length ? visible[visible.length - 1].values : {};
    svg.dataset.samples = String(visible.length);
    svg.dataset.latest = JSON.stringify(latest);
    clear(
      legend,
      series.map((line) =>
        h(
          "span",
          { class: "legend-item" },
          h("i", { class: "swatch", style: `background:${line.color}` }),
          `${line.label} `,
          h("b", {}, latest[line.key] === undefined ? "–" : number(latest[line.key]) + unit),
        ),
      ),
    );
  }

  update([]);
  return { element, update };
}

/// A horizontal bar for a fraction 0..1 (a shard's busy time).
export function fractionBar(fraction) {
  const shown = Math.max(0, Math.min(1, Number(fraction) || 0));
  const level = shown > 0.85 ? "high" : shown > 0.6 ? "medium" : "low";
  return h(
    "span",
    { class: "fraction" },
    s("svg", { viewBox: "0 0 100 10", class: "bar", preserveAspectRatio: "none" },
      s("rect", { x: 0, y: 0, width: 100, height: 10, class: "bar-back" }),
      s("rect", { x: 0, y: 0, width: (shown * 100).toFixed(1), height: 10, class: `bar-fill ${level}` }),
    ),
    ` ${(shown * 100).toFixed(0)}%`,
  );
}
