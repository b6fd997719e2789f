// The insights card: ds's explained insights for this month (GET /v1/insights), each its
// sentence and the numbers behind it. Fact values arrive as decimal strings or integers;
// which ones are money, percentages or dates is fixed by ds's rules (services/ds/insights.py).
import * as API from "./api.js";
import { money, date, number } from "./format.js";
import { h } from "./ui.js";

const MONEY_FACTS = new Set(["spent_so_far", "expected_recurring", "median_daily", "this_period", "median", "mad",
  "this_period_so_far", "usual_so_far", "change", "amount", "previous_amount"]);
const DATE_FACTS = new Set(["first_charge", "last_charge", "next_due"]);
const PERCENT_FACTS = new Set(["change_percent"]);
const TITLES = { projection: "Projection", category_anomaly: "Unusual category", trend: "Trend",
  biggest_change: "Biggest change", subscription: "Subscription" };

function factValue(name, value, currency) {
  if (value === "") return "—";
  if (MONEY_FACTS.has(name)) return money(value, currency);
  if (DATE_FACTS.has(name)) return date(value);
  if (PERCENT_FACTS.has(name)) return `${Number(value) > 0 ? "+" : ""}${value}%`;
  return /^-?\d+$/.test(value) ? number(Number(value)) : value;
}

function label(name) { const text = name.replace(/_/g, " "); return text[0].toUpperCase() + text.slice(1); }

export async function insightsCard(el, categoryName) {
  const answer = await API.get("/v1/insights", { period: "month" });
  const items = answer.insights || [];
  el.replaceChildren(h("h2", {}, "Insights"), items.length
    ? h("ul", { className: "alerts", id: "insight-list" }, items.map((i) => h("li", { dataset: { type: i.type } },
      h("div", { className: "row" }, h("strong", {}, TITLES[i.type] || i.type),
        h("span", { className: "muted" }, [i.category_id ? categoryName(i.category_id) : "", i.merchant, i.currency].filter(Boolean).join(" · "))),
      // Without templating ds answers no sentence: the numbers still tell.
      h("p", {}, i.text || h("span", { className: "muted" }, "No explanation right now; the numbers:")),
      i.low && i.high ? h("p", { className: "muted" }, `Likely between ${money(i.low, i.currency)} and ${money(i.high, i.currency)}`) : null,
      h("dl", { className: "facts" }, (i.facts || []).flatMap((f) => [h("dt", {}, label(f.name)), h("dd", {}, factValue(f.name, f.value, i.currency))])))))
    : h("p", { className: "muted" }, `Nothing stands out between ${date(answer.period_start)} and ${date(answer.period_end)} yet.`));
}
