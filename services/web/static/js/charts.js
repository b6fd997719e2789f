// Charts drawn with uPlot (vendored from npm, services/web/static/vendor). Every chart
// comes with a table of the same numbers (visually hidden unless asked for), which is
// what screen readers read and what the browser tests check.
import { money, date, monthLabel, number } from "./format.js";

const COLORS = ["#1f5fbf", "#c05a00", "#1c7c3c", "#7b3fa0", "#b3261e", "#00796b"];

function epoch(isoDate) {
  const [y, m, d] = isoDate.split("-").map(Number);
  return Date.UTC(y, m - 1, d) / 1000;
}

function width(el) { return Math.max(260, el.clientWidth || 300); }

function figure(el, caption, head, rows) {
  el.replaceChildren();
  const plot = document.createElement("div");
  plot.className = "chart";
  plot.setAttribute("aria-hidden", "true");
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  summary.textContent = `${caption}: as a table`;
  const table = document.createElement("table");
  table.dataset.chart = caption;
  const thead = table.createTHead().insertRow();
  for (const h of head) { const th = document.createElement("th"); th.textContent = h; thead.append(th); }
  const body = table.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    row.forEach((cell, i) => { const td = tr.insertCell(); td.textContent = cell; if (i) td.className = "num"; });
  }
  details.append(summary, table);
  el.append(plot, details);
  return plot;
}

function resizeWith(el, chart) {
  new ResizeObserver(() => chart.setSize({ width: width(el), height: chart.height })).observe(el);
}

export function dailyBars(el, series, currency) {
  const rows = series.map((p) => [date(p.start), money(p.total, currency)]);
  const plot = figure(el, `Daily spending (${currency})`, ["Day", "Spent"], rows);
  if (!window.uPlot || !series.length) return;
  const data = [series.map((p) => epoch(p.start)), series.map((p) => Number(p.total))];
  const chart = new window.uPlot({
    width: width(el), height: 200,
    scales: { x: { time: true } },
    axes: [{ values: (u, vals) => vals.map((v) => String(new Date(v * 1000).getUTCDate())) },
      { size: 70, values: (u, vals) => vals.map((v) => money(String(v), currency)) }],
    series: [{}, {
      label: currency, fill: COLORS[0], stroke: COLORS[0],
      paths: window.uPlot.paths.bars({ size: [0.7, 40] }),
      value: (u, v) => (v === null ? "" : money(String(v), currency)),
    }],
  }, data, plot);
  resizeWith(el, chart);
}

// One currency at a time: amounts of different currencies on one axis would read as
// comparable. The y axis is labelled in that currency, like the daily bars.
export function trendLines(el, points, currency) {
  const mine = points.filter((p) => p.currency === currency);
  const starts = [...new Set(points.map((p) => p.period_start))].sort();
  const total = (start) => mine.find((p) => p.period_start === start)?.total ?? "0";
  const rows = starts.map((s) => [monthLabel(s), money(total(s), currency)]);
  const plot = figure(el, `Monthly trend (${currency})`, ["Month", "Spent"], rows);
  if (!window.uPlot || !starts.length) return;
  const data = [starts.map(epoch), starts.map((s) => Number(total(s)))];
  const chart = new window.uPlot({
    width: width(el), height: 220,
    scales: { x: { time: true } },
    axes: [{ values: (u, vals) => vals.map((v) => monthLabel(new Date(v * 1000).toISOString().slice(0, 10))) },
      { size: 80, values: (u, vals) => vals.map((v) => money(String(v), currency)) }],
    series: [{ value: (u, v) => (v ? monthLabel(new Date(v * 1000).toISOString().slice(0, 10)) : "") }, {
      label: currency, stroke: COLORS[0], width: 2, points: { show: true },
      value: (u, v) => (v === null ? "" : money(String(v), currency)),
    }],
  }, data, plot);
  resizeWith(el, chart);
}

// Spending by category as bars of buttons: each is focusable, shows its value, and a
// click (or Enter) opens the expenses list filtered to that category.
export function categoryBars(el, categories, currency, onPick) {
  el.replaceChildren();
  const list = document.createElement("ul");
  list.className = "bars";
  list.dataset.chart = `By category (${currency})`;
  for (const c of categories) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.title = `${c.name}: ${money(c.total, currency)} (${c.share_percent}%) — show these expenses`;
    const name = document.createElement("span"); name.className = "name"; name.textContent = c.name || "Uncategorized";
    const meter = document.createElement("meter"); meter.min = 0; meter.max = 100; meter.value = Number(c.share_percent);
    meter.setAttribute("aria-label", `${c.name} share`);
    const value = document.createElement("span"); value.className = "num"; value.textContent = money(c.total, currency);
    button.append(name, meter, value);
    button.addEventListener("click", () => onPick(c));
    li.append(button);
    list.append(li);
  }
  el.append(list);
}
