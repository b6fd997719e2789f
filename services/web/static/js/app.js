// expense-mesh dashboard: a static single-page app on the public REST API only.
// Hash routes (#/dashboard...), so the web service serves one page and its assets.
import * as API from "./api.js";
import { usePreferences, money, date, dateTime, today, number } from "./format.js";
import { dailyBars, trendLines, categoryBars } from "./charts.js";
import { notifications, refreshBadge } from "./notifications.js";
import { insightsCard } from "./insights.js";
import { smsReview } from "./smsreview.js";
import { main, h, field, toast, errorText, screen, failure, section } from "./ui.js";
const state = { profile: null, categories: [], categoryNames: new Map() };

function categoryName(id) { return state.categoryNames.get(id) || (id ? "…" : "Uncategorized"); }

function categorySelect(selected, allowNone = true, label = "Category") {
  return h("select", { name: "category_id", "aria-label": label },
    allowNone ? h("option", { value: "" }, "—") : null,
    state.categories.map((c) => h("option", { value: c.category_id, selected: c.category_id === selected }, c.name)));
}

async function loadCategories() {
  const { categories } = await API.get("/v1/categories");
  state.categories = categories;
  state.categoryNames = new Map(categories.map((c) => [c.category_id, c.name]));
}

// ------------------------------------------------------------------ sign in

function authScreen(mode = "login") {
  document.getElementById("bar").hidden = true;
  const signup = mode === "signup";
  const message = h("p", { role: "alert", className: "error" });
  const email = h("input", { type: "email", name: "email", required: true, autocomplete: "email" });
  const password = h("input", { type: "password", name: "password", required: true,
    autocomplete: signup ? "new-password" : "current-password", minLength: signup ? 8 : 1 });
  const name = h("input", { type: "text", name: "display_name", autocomplete: "name" });
  const submit = h("button", { type: "submit" }, signup ? "Create account" : "Log in");
  const form = h("form", { className: "stack card", onsubmit: async (event) => {
    event.preventDefault();
    submit.disabled = true;
    message.textContent = "";
    try {
      if (signup) await API.signUp(email.value, password.value, name.value.trim() || email.value.split("@")[0]);
      else await API.logIn(email.value, password.value);
      await start();
    } catch (error) {
      message.textContent = error.status === 401 ? "Wrong email or password." : errorText(error);
    } finally { submit.disabled = false; }
  } },
  signup ? field("Your name", name) : null, field("Email", email), field("Password", password), submit, message,
  h("p", {}, signup ? "Have an account? " : "New here? ",
    h("a", { href: signup ? "#/login" : "#/signup" }, signup ? "Log in" : "Sign up")),
  signup ? null : h("p", {}, h("a", { href: "#/forgot-password" }, "Forgot your password?")));
  screen(signup ? "Create your account" : "Log in", form);
  email.focus();
}

// Password reset, without a session: auth mails a one-time link to
// `[auth] password_reset_url`, which points here (#/reset-password?token=...; a fragment, so
// the token never reaches a server's access log).
function forgotPasswordScreen() {
  document.getElementById("bar").hidden = true;
  const email = h("input", { type: "email", name: "email", required: true, autocomplete: "email" });
  const message = h("p", { role: "status", id: "reset-status" });
  const form = h("form", { className: "stack card", onsubmit: async (event) => {
    event.preventDefault();
    try {
      await API.publicPost("/v1/auth/password:reset-request", { email: email.value });
      // The same answer whether or not the email has an account.
      message.textContent = "If this email has an account, a link to choose a new password is on its way.";
    } catch (error) { message.textContent = errorText(error); }
  } }, field("Email", email), h("button", { type: "submit" }, "Send the link"), message,
  h("p", {}, h("a", { href: "#/login" }, "Back to log in")));
  screen("Reset your password", form);
  email.focus();
}

function resetPasswordScreen(params) {
  document.getElementById("bar").hidden = true;
  const password = h("input", { type: "password", name: "new_password", required: true, autocomplete: "new-password" });
  const message = h("p", { role: "status", id: "reset-status" });
  const form = h("form", { className: "stack card", onsubmit: async (event) => {
    event.preventDefault();
    try {
      await API.publicPost("/v1/auth/password:reset", { token: params.get("token") || "", new_password: password.value });
      message.replaceChildren("Your password is changed and every session ended. ", h("a", { href: "#/login" }, "Log in"));
    } catch (error) {
      const expired = error.fields.some((v) => v.field === "token");
      message.replaceChildren(...(expired
        ? ["This link is no longer valid: ", h("a", { href: "#/forgot-password" }, "ask for a new one"), "."]
        : [errorText(error)]));
    }
  } }, field("New password", password), h("button", { type: "submit" }, "Set the new password"), message);
  screen("Choose a new password", form);
  password.focus();
}

// ------------------------------------------------------------------ dashboard

async function dashboard() {
  const totals = h("div", { className: "card wide", id: "totals" });
  const byCategory = h("div", { className: "card", id: "by-category" });
  const daily = h("div", { className: "card", id: "daily" });
  const trend = h("div", { className: "card wide", id: "trend" });
  const budgets = h("div", { className: "card", id: "budget-progress" });
  const bills = h("div", { className: "card", id: "upcoming-bills" });
  const alerts = h("div", { className: "card", id: "latest-alerts" });
  const insights = h("div", { className: "card wide", id: "insights" });
  screen("Dashboard", h("div", { className: "grid" }, totals, byCategory, daily, trend, budgets, bills, alerts, insights));
  const summary = API.get("/v1/reports/summary", { period: "month" });
  await Promise.all([
    section(totals, async (el) => {
      const { currencies } = await summary;
      el.replaceChildren(h("h2", {}, "This month against last month"),
        currencies.length ? h("div", { className: "table-scroll" }, h("table", { id: "month-totals" },
          h("thead", {}, h("tr", {}, h("th", {}, "Currency"), h("th", { className: "num" }, "This month"),
            h("th", { className: "num hide-narrow" }, "Last month"), h("th", { className: "num" }, "Change"))),
          h("tbody", {}, currencies.map((c) => h("tr", {}, h("td", {}, c.currency),
            h("td", { className: "num big" }, money(c.total, c.currency)),
            h("td", { className: "num hide-narrow" }, money(c.previous_total, c.currency)),
            h("td", { className: `num ${Number(c.change_percent) > 0 ? "up" : "down"}` },
              c.change_percent ? `${Number(c.change_percent) > 0 ? "+" : ""}${c.change_percent}%` : "—"))))))
          : h("p", { className: "muted" }, "No expenses this month yet. ", h("a", { href: "#/expenses" }, "Add one")));
    }),
    section(byCategory, async (el) => {
      const { currencies } = await summary;
      el.replaceChildren(h("h2", {}, "By category"));
      for (const c of currencies) {
        const holder = h("div");
        el.append(h("h3", { className: "muted" }, c.currency), holder);
        categoryBars(holder, c.by_category, c.currency, (category) => {
          location.hash = `#/expenses?category_id=${encodeURIComponent(category.category_id)}`;
        });
      }
      if (!currencies.length) el.append(h("p", { className: "muted" }, "Nothing yet."));
    }),
    section(daily, async (el) => {
      const { currencies } = await summary;
      el.replaceChildren(h("h2", {}, "Day by day"));
      for (const c of currencies) { const holder = h("div"); el.append(holder); dailyBars(holder, c.series, c.currency); }
      if (!currencies.length) el.append(h("p", { className: "muted" }, "Nothing yet."));
    }),
    section(trend, async (el) => trendCard(el,
      (await API.get("/v1/reports/trend", { period: "month", count: 12 })).points)),
    section(budgets, async (el) => {
      const { budgets: list } = await API.get("/v1/budgets");
      el.replaceChildren(h("h2", {}, "Budgets"), ...(list.length ? list.map(budgetProgress)
        : [h("p", { className: "muted" }, "No budgets. ", h("a", { href: "#/budgets" }, "Set one"))]));
    }),
    section(bills, async (el) => {
      const { bills: list } = await API.get("/v1/bills");
      // next_due is the earliest occurrence not settled, however old: a past one leads the list.
      const upcoming = list.filter((b) => b.next_due).sort((a, b) => a.next_due.localeCompare(b.next_due)).slice(0, 5);
      el.replaceChildren(h("h2", {}, "Bills due"), upcoming.length
        ? h("ul", { className: "alerts" }, upcoming.map((b) => h("li", { className: "row" },
          h("span", {}, b.payee), h("span", {}, `${date(b.next_due)} · ${money(b.amount, b.currency)}`))))
        : h("p", { className: "muted" }, "No bills due."));
    }),
    section(alerts, async (el) => {
      const { alerts: list } = await API.get("/v1/alerts", { page_size: 5 });
      el.replaceChildren(h("h2", {}, "Latest alerts"), alertList(list));
    }),
    section(insights, (el) => insightsCard(el, categoryName)),
  ]);
}

// The trend of one currency at a time (the profile's by default), with a choice of the
// others when there are any.
function trendCard(el, points) {
  const currencies = [...new Set(points.map((p) => p.currency))].sort();
  const preferred = state.profile.default_currency;
  const first = currencies.includes(preferred) || !currencies.length ? preferred : currencies[0];
  const holder = h("div");
  const draw = (currency) => trendLines(holder, points, currency);
  const choice = currencies.length > 1 ? h("select", { id: "trend-currency", "aria-label": "Trend currency",
    onchange: (event) => draw(event.target.value) },
  currencies.map((c) => h("option", { value: c, selected: c === first }, c))) : null;
  el.replaceChildren(h("div", { className: "row" }, h("h2", {}, "Last 12 months"), choice || ""), holder);
  draw(first);
}

// A rollover budget can carry an overspend past its amount: budgeted is then zero or less,
// billing sends no percent, and the card says how far over it is instead.
function budgetUse(s, currency) {
  if (Number(s.budgeted || 0) > 0) {
    return { spent: `${money(s.spent, currency)} of ${money(s.budgeted, currency)}`, percent: Number(s.percent || 0),
      usage: `${s.percent || 0}% spent` };
  }
  const over = String(s.remaining || "0").replace(/^-/, "");
  return { spent: `${money(s.spent, currency)} spent, ${money(s.carried, currency)} carried`, percent: 100,
    usage: Number(over) ? `over by ${money(over, currency)}` : "nothing left to spend" };
}

function budgetProgress(b) {
  const s = b.status || {};
  const use = budgetUse(s, b.currency);
  return h("div", { className: "budget", dataset: { budget: b.budget_id } },
    h("div", { className: "row" }, h("strong", {}, b.category_id ? categoryName(b.category_id) : `All spending (${b.period})`),
      h("span", {}, use.spent)),
    h("meter", { min: 0, max: 100, low: 80, high: 99, optimum: 0, value: Math.min(use.percent, 100),
      "aria-label": `Budget use: ${use.usage}` }),
    h("div", { className: "row muted" }, h("span", {}, use.usage),
      h("span", { className: s.on_track ? "ok" : "error" },
        `projected ${money(s.projected, b.currency)}${s.on_track ? " · on track" : " · over budget"}`)));
}

function alertList(list) {
  if (!list.length) return h("p", { className: "muted" }, "No alerts.");
  return h("ul", { className: "alerts", id: "alert-list" }, list.map((a) => h("li", {},
    h("span", { className: `sev-${a.severity}` }, a.severity), " ", a.title,
    h("div", { className: "muted" }, dateTime(a.create_time)))));
}

// ------------------------------------------------------------------ expenses

async function expenses(params) {
  const filters = {
    from: params.get("from") || "", to: params.get("to") || "",
    category_id: params.get("category_id") || "", q: params.get("q") || "",
  };
  const body = h("tbody", { id: "expense-rows" });
  const sentinel = h("div", { className: "sentinel" });
  const status = h("p", { className: "muted", role: "status", id: "list-status" });
  let pageToken = "";
  let loading = false;
  let done = false;

  async function more() {
    if (loading || done) return;
    loading = true;
    status.textContent = "Loading…";
    try {
      // No total shown, so none counted (the count is most of a common word's cost).
      const page = await API.get("/v1/expenses", { ...filters, page_size: 50, page_token: pageToken, skip_total_size: true });
      for (const e of page.expenses) body.append(expenseRow(e));
      pageToken = page.next_page_token;
      done = !pageToken;
      status.textContent = done ? (body.rows.length ? `${number(body.rows.length)} expenses` : "No expenses match.") : "";
    } catch (error) {
      status.replaceChildren(failure("Could not load expenses", error));
      done = true;
    } finally { loading = false; }
    // A short first page leaves the sentinel in view: keep filling.
    if (!done && sentinel.getBoundingClientRect().top < innerHeight) more();
  }

  const inputs = {
    from: h("input", { type: "date", name: "from", value: filters.from }),
    to: h("input", { type: "date", name: "to", value: filters.to }),
    category_id: categorySelect(filters.category_id),
    q: h("input", { type: "search", name: "q", value: filters.q, placeholder: "merchant, note" }),
  };
  const filterForm = h("form", { className: "filters", role: "search", onsubmit: (event) => {
    event.preventDefault();
    const query = new URLSearchParams(Object.entries(inputs).map(([k, el]) => [k, el.value]).filter(([, v]) => v));
    location.hash = `#/expenses?${query}`;
  } }, field("From", inputs.from), field("To", inputs.to), field("Category", inputs.category_id),
  field("Search", inputs.q), h("button", { type: "submit" }, "Filter"));

  screen("Expenses", addForm(body), filterForm, transfers(),
    h("div", { className: "card table-scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Date"), h("th", {}, "Merchant"), h("th", { className: "hide-narrow" }, "Category"),
        h("th", { className: "num" }, "Amount"), h("th", {}, h("span", { className: "muted" }, "Actions")))),
      body), sentinel, status));
  new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) more(); }).observe(sentinel);
  more();
}

function addForm(body) {
  const amount = h("input", { name: "amount", inputMode: "decimal", required: true, pattern: "[0-9]+(\\.[0-9]{1,3})?", placeholder: "450.00" });
  const currency = h("input", { name: "currency", value: state.profile.default_currency, maxLength: 3, size: 4 });
  const spentOn = h("input", { type: "date", name: "spent_on", value: today() });
  const merchant = h("input", { name: "merchant", placeholder: "Chai Point" });
  const category = categorySelect("");
  const message = h("span", { role: "alert", className: "error" });
  const submit = h("button", { type: "submit" }, "Add");
  return h("form", { className: "filters card", id: "add-expense", onsubmit: async (event) => {
    event.preventDefault();
    submit.disabled = true;
    message.textContent = "";
    try {
      const created = await API.post("/v1/expenses", { request_id: API.requestId(), amount: amount.value,
        currency: currency.value.toUpperCase(), spent_on: spentOn.value, merchant: merchant.value, category_id: category.value });
      body.prepend(expenseRow(created));
      document.getElementById("list-status").textContent = "";
      amount.value = ""; merchant.value = "";
      amount.focus();
      toast("Expense added");
    } catch (error) { message.textContent = errorText(error); } finally { submit.disabled = false; }
  } }, field("Amount", amount), field("Currency", currency), field("Date", spentOn), field("Merchant", merchant),
  field("Category", category), submit, message);
}

function expenseRow(e) {
  const row = h("tr", { dataset: { id: e.expense_id, etag: e.etag } },
    h("td", {}, date(e.spent_on)), h("td", {}, e.merchant || h("span", { className: "muted" }, "—")),
    h("td", { className: "hide-narrow" }, categoryName(e.category_id)),
    h("td", { className: "num" }, money(e.amount, e.currency)),
    h("td", { className: "actions" },
      h("button", { type: "button", className: "link", onclick: () => row.replaceWith(editRow(e)),
        "aria-label": `Edit ${e.merchant || "expense"} of ${e.amount}` }, "Edit"),
      h("button", { type: "button", className: "link", onclick: () => remove(e, row),
        "aria-label": `Delete ${e.merchant || "expense"} of ${e.amount}` }, "Delete")));
  return row;
}

// The row gives way to a notice; Reload puts the expense back as it now is.
function conflict(row, e) {
  const notice = h("tr", { dataset: { id: e.expense_id } });
  notice.append(h("td", { colSpan: 5, className: "conflict", role: "alert" }, "Changed elsewhere, reload. ",
    h("button", { type: "button", className: "secondary", onclick: async () => {
      try { notice.replaceWith(expenseRow(await API.get(`/v1/expenses/${e.expense_id}`))); }
      catch (error) { toast(errorText(error)); notice.remove(); }
    } }, "Reload")));
  row.replaceWith(notice);
}

async function remove(e, row) {
  if (!confirm(`Delete ${e.merchant || "this expense"} (${money(e.amount, e.currency)})?`)) return;
  try {
    await API.del(`/v1/expenses/${e.expense_id}`, { etag: e.etag });
    row.remove();
    toast("Expense deleted");
  } catch (error) {
    if (error.status === 409) conflict(row, e); else toast(errorText(error));
  }
}

function editRow(e) {
  const inputs = {
    spent_on: h("input", { type: "date", value: e.spent_on, "aria-label": "Date" }),
    merchant: h("input", { value: e.merchant, "aria-label": "Merchant" }),
    category_id: categorySelect(e.category_id),
    amount: h("input", { value: e.amount, inputMode: "decimal", "aria-label": "Amount", size: 8 }),
  };
  const message = h("span", { role: "alert", className: "error" });
  const row = h("tr", { className: "editing", dataset: { id: e.expense_id } },
    h("td", {}, inputs.spent_on), h("td", {}, inputs.merchant), h("td", { className: "hide-narrow" }, inputs.category_id),
    h("td", { className: "num" }, inputs.amount),
    h("td", { className: "actions" },
      h("button", { type: "button", onclick: save }, "Save"),
      h("button", { type: "button", className: "link", onclick: () => row.replaceWith(expenseRow(e)) }, "Cancel"), message));
  async function save() {
    const changed = Object.entries(inputs).filter(([k, el]) => el.value !== (e[k] || ""));
    if (!changed.length) { row.replaceWith(expenseRow(e)); return; }
    try {
      const updated = await API.patch(`/v1/expenses/${e.expense_id}`, {
        expense: Object.fromEntries(changed.map(([k, el]) => [k, el.value])),
        update_mask: changed.map(([k]) => k).join(","), etag: e.etag,
      });
      row.replaceWith(expenseRow(updated));
      toast("Saved");
    } catch (error) {
      if (error.status === 409) conflict(row, e); else message.textContent = errorText(error);
    }
  }
  setTimeout(() => inputs.amount.focus());
  return row;
}

// CSV in and out. An import sends the file in chunks; each row's request id is its own
// (expense_id, request_id) or derived from the file's name and the row itself, so importing
// the same file again adds nothing twice.
function transfers() {
  const file = h("input", { type: "file", accept: ".csv,text/csv", name: "csv", "aria-label": "CSV file to import" });
  const progress = h("progress", { max: 1, value: 0, id: "import-progress", hidden: true, "aria-label": "Import progress" });
  const result = h("p", { role: "status", id: "import-result" });
  const month = h("input", { type: "month", value: today().slice(0, 7), "aria-label": "Month to export" });
  return h("details", { className: "card" }, h("summary", {}, "Import and export CSV"),
    h("div", { className: "filters" }, field("Import a CSV (columns: amount, currency, spent_on or date, merchant, category_id, note, tags)", file),
      h("button", { type: "button", onclick: () => importCsv(file.files[0], progress, result) }, "Import")),
    progress, result,
    h("div", { className: "filters" }, field("Export month", month),
      h("button", { type: "button", className: "secondary", id: "export", onclick: () => exportMonth(month.value) }, "Export CSV")));
}

function parseCsv(text) {
  const rows = [];
  let row = [], cell = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; } else if (c === '"') quoted = false; else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(cell); cell = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(cell); cell = "";
      if (row.some((v) => v.trim())) rows.push(row);
      row = [];
    } else cell += c;
  }
  row.push(cell);
  if (row.some((v) => v.trim())) rows.push(row);
  return rows;
}

async function rowRequestId(fileName, index, values) {
  const bytes = new TextEncoder().encode(`${fileName}\u0000${index}\u0000${values.join("\u0001")}`);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return `csv-${[...digest.slice(0, 16)].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

const IMPORT_COLUMNS = ["amount", "currency", "spent_on", "category_id", "merchant", "note", "tags"];
// `date` is what the ledger's export (and most banks) call the day: ignored, every row
// would be dated today. The same aliases as `em import` (services/cli/csvimport.py).
const COLUMN_ALIASES = { date: "spent_on" };

function columnNames(header) {
  const names = header.map((n) => n.trim().toLowerCase());
  return names.map((n) => (COLUMN_ALIASES[n] && !names.includes(COLUMN_ALIASES[n]) ? COLUMN_ALIASES[n] : n));
}
const IMPORT_CHUNK = 200;

function csvText(rows) {
  return rows.map((row) => row.map((v) => `"${v.replaceAll('"', '""')}"`).join(",")).join("\r\n");
}

// A file whose rows carry their own ids (an export's expense_id, or request_id) goes to the
// ledger as it is, in chunks (`csv`): the ledger reads it as any REST client's, each row keyed
// by its id, so the same rows under any file name add nothing and an export's category paths
// resolve. Any other file is read here, each row keyed by the file's name and the row.
async function importBody(file, header, names, chunk, start) {
  if (names.includes("expense_id") || names.includes("request_id")) return { csv: csvText([header, ...chunk]) };
  const rows = await Promise.all(chunk.map(async (values, offset) => {
    const row = { request_id: await rowRequestId(file.name, start + offset, values) };
    names.forEach((name, i) => {
      if (name === "tags") row.tags = (values[i] || "").split("|").filter((t) => t.trim());
      else if (IMPORT_COLUMNS.includes(name) && values[i]) row[name] = values[i].trim();
    });
    return row;
  }));
  return { rows };
}

async function importCsv(file, progress, result) {
  if (!file) { result.textContent = "Choose a CSV file first."; return; }
  const [header, ...lines] = parseCsv(await file.text());
  const names = columnNames(header);
  if (!names.includes("amount")) { result.textContent = "The first line must name the columns, amount among them."; return; }
  progress.hidden = false; progress.max = lines.length; progress.value = 0;
  const totals = { created: 0, duplicate: 0, invalid: 0 };
  try {
    for (let start = 0; start < lines.length; start += IMPORT_CHUNK) {
      const chunk = lines.slice(start, start + IMPORT_CHUNK);
      const answer = await API.post("/v1/expenses:import", await importBody(file, header, names, chunk, start));
      totals.created += answer.created_count; totals.duplicate += answer.duplicate_count; totals.invalid += answer.invalid_count;
      progress.value = start + chunk.length;
      result.textContent = `${number(progress.value)} of ${number(lines.length)} rows…`;
    }
    result.textContent = `Imported ${number(totals.created)}, already there ${number(totals.duplicate)}, invalid ${number(totals.invalid)}.`;
  } catch (error) { result.replaceChildren(failure("Import stopped (run it again to resume)", error)); }
}

async function exportMonth(month) {
  try {
    const answer = await API.get("/v1/reports/export", { period: "month", date: `${month}-01` });
    const link = h("a", { href: URL.createObjectURL(new Blob([answer.csv], { type: "text/csv" })), download: answer.filename });
    document.body.append(link);
    link.click();
    link.remove();
    toast(`Exported ${number(answer.row_count)} expenses`);
  } catch (error) { toast(errorText(error)); }
}

// A bill's rule as a person reads it: the simple ones the form makes in words, any other
// RRULE (from the API: "FREQ=MONTHLY;BYMONTHDAY=28,29,30,31;BYSETPOS=-1") as it is, wrapped.
const REPEATS = { "FREQ=MONTHLY": "monthly", "FREQ=WEEKLY": "weekly", "FREQ=YEARLY": "yearly", "FREQ=DAILY": "daily" };

function repeats(rule) { return REPEATS[rule] || rule; }

// ------------------------------------------------------------------ budgets and bills

async function budgetsAndBills() {
  const budgets = h("div", { className: "card", id: "budgets" });
  const bills = h("div", { className: "card", id: "bills" });
  const suggestions = h("div", { className: "card", id: "suggestions" });
  screen("Budgets & bills", h("div", { className: "grid" }, budgets, bills, suggestions));
  const load = () => Promise.all([
    section(budgets, async (el) => {
      const { budgets: list } = await API.get("/v1/budgets");
      el.replaceChildren(h("h2", {}, "Budgets"), ...list.map((b) => budgetItem(b, load)), budgetForm(load));
    }),
    section(bills, async (el) => {
      const { bills: list } = await API.get("/v1/bills");
      el.replaceChildren(h("h2", {}, "Bills"), h("ul", { className: "alerts", id: "bill-list" },
        list.map((b) => billItem(b, load))), billForm(load));
    }),
    section(suggestions, async (el) => {
      const { suggestions: list } = await API.get("/v1/bills:suggestions");
      el.replaceChildren(h("h2", {}, "Subscriptions we noticed"), list.length ? h("ul", { className: "alerts" },
        list.map((s) => h("li", { className: "row" }, h("span", {}, `${s.payee} · ${money(s.amount, s.currency)} ${s.cadence}`),
          h("button", { type: "button", onclick: async () => {
            try { await API.post("/v1/bills:acceptSuggestion", { request_id: API.requestId(), suggestion_id: s.suggestion_id }); load(); }
            catch (error) { toast(errorText(error)); }
          } }, "Track as bill")))) : h("p", { className: "muted" }, "None yet."));
    }),
  ]);
  await load();
}

// A budget with Edit (amount and alert thresholds, sent with its etag) and Remove.
function budgetItem(b, reload) {
  const item = h("div", { className: "budget-item", dataset: { budget: b.budget_id } });
  const show = () => item.replaceChildren(budgetProgress(b), h("div", { className: "row" },
    h("button", { type: "button", className: "secondary", onclick: edit }, "Edit"),
    h("button", { type: "button", className: "danger", onclick: async () => {
      try { await API.del(`/v1/budgets/${b.budget_id}`, { etag: b.etag }); reload(); } catch (error) { toast(errorText(error)); }
    } }, "Remove")));
  function edit() {
    const amount = h("input", { name: "amount", value: b.amount, inputMode: "decimal" });
    const thresholds = h("input", { name: "thresholds", value: b.thresholds.join(",") });
    const message = h("p", { role: "alert", className: "error" });
    item.replaceChildren(h("form", { className: "stack", onsubmit: async (event) => {
      event.preventDefault();
      try {
        await API.patch(`/v1/budgets/${b.budget_id}`, { etag: b.etag, update_mask: "amount,thresholds",
          budget: { amount: amount.value, thresholds: thresholds.value.split(",").map((t) => Number(t.trim())).filter(Boolean) } });
        toast("Budget saved");
        reload();
      } catch (error) { message.textContent = errorText(error); }
    } }, field("Amount", amount), field("Alert at (% of the budget)", thresholds),
    h("div", { className: "row" }, h("button", { type: "submit" }, "Save"),
      h("button", { type: "button", className: "link", onclick: show }, "Cancel")), message));
    amount.focus();
  }
  show();
  return item;
}

function budgetForm(reload) {
  const amount = h("input", { name: "amount", required: true, inputMode: "decimal" });
  const currency = h("input", { name: "currency", value: state.profile.default_currency, maxLength: 3 });
  const period = h("select", { name: "period" }, ["month", "week", "year"].map((p) => h("option", { value: p }, p)));
  const category = categorySelect("", true);
  const thresholds = h("input", { name: "thresholds", value: "80,100" });
  const message = h("p", { role: "alert", className: "error" });
  return h("form", { className: "stack", id: "budget-form", onsubmit: async (event) => {
    event.preventDefault();
    try {
      await API.post("/v1/budgets", { request_id: API.requestId(), amount: amount.value, currency: currency.value.toUpperCase(),
        period: period.value, category_id: category.value,
        thresholds: thresholds.value.split(",").map((t) => Number(t.trim())).filter(Boolean) });
      toast("Budget set");
      reload();
    } catch (error) { message.textContent = errorText(error); }
  } }, h("h3", {}, "New budget"), field("Amount", amount), field("Currency", currency), field("Period", period),
  field("Category (none: all spending)", category), field("Alert at (% of the budget)", thresholds),
  h("button", { type: "submit" }, "Set budget"), message);
}

// A bill and, on demand, its occurrences (the default window around today), each paid,
// skipped or still due.
function billItem(b, reload) {
  const occurrences = h("div", { className: "occurrences" });
  const toggle = h("button", { type: "button", className: "link", "aria-expanded": "false", onclick: async () => {
    const open = toggle.getAttribute("aria-expanded") === "true";
    toggle.setAttribute("aria-expanded", String(!open));
    if (open) { occurrences.replaceChildren(); return; }
    await section(occurrences, async (el) => {
      const { occurrences: items } = await API.get(`/v1/bills/${b.bill_id}/occurrences`);
      el.replaceChildren(h("table", {}, h("tbody", {}, items.map((o) => h("tr", {},
        h("td", {}, date(o.due_date)), h("td", { className: "num" }, money(o.amount, o.currency)), h("td", {}, o.status),
        h("td", { className: "actions" }, o.status === "upcoming" || o.status === "overdue"
          ? [occurrenceAction(b, o, "pay", "Paid", reload), occurrenceAction(b, o, "skip", "Skip", reload)] : null))))));
    });
  } }, "Occurrences");
  return h("li", { dataset: { bill: b.bill_id } },
    h("div", { className: "row" }, h("strong", {}, b.payee), h("span", {}, money(b.amount, b.currency))),
    h("div", { className: "muted rule" }, `${repeats(b.recurrence)} · next ${b.next_due ? date(b.next_due) : "—"}`),
    b.next_due ? occurrenceAction(b, { due_date: b.next_due }, "pay", "Mark next paid", reload) : null, toggle, occurrences);
}

function occurrenceAction(b, occurrence, action, label, reload) {
  return h("button", { type: "button", className: "secondary", onclick: async () => {
    try {
      await API.post(`/v1/bills/${b.bill_id}/occurrences/${occurrence.due_date}:${action}`, {});
      toast(action === "pay" ? "Paid" : "Skipped");
      reload();
    } catch (error) { toast(errorText(error)); }
  } }, label);
}

function billForm(reload) {
  const payee = h("input", { name: "payee", required: true });
  const amount = h("input", { name: "amount", required: true, inputMode: "decimal" });
  const currency = h("input", { name: "currency", value: state.profile.default_currency, maxLength: 3 });
  const firstDue = h("input", { type: "date", name: "first_due", value: today(), required: true });
  const recurrence = h("select", { name: "recurrence" },
    Object.entries(REPEATS).filter(([v]) => v !== "FREQ=DAILY").map(([v, l]) => h("option", { value: v }, l)));
  const message = h("p", { role: "alert", className: "error" });
  return h("form", { className: "stack", id: "bill-form", onsubmit: async (event) => {
    event.preventDefault();
    try {
      await API.post("/v1/bills", { request_id: API.requestId(), payee: payee.value, amount: amount.value,
        currency: currency.value.toUpperCase(), first_due: firstDue.value, recurrence: recurrence.value, remind_days_before: 3 });
      toast("Bill added");
      reload();
    } catch (error) { message.textContent = errorText(error); }
  } }, h("h3", {}, "New bill"), field("Payee", payee), field("Amount", amount), field("Currency", currency),
  field("First due", firstDue), field("Repeats", recurrence), h("button", { type: "submit" }, "Add bill"), message);
}

// ------------------------------------------------------------------ alerts

async function alerts() {
  const list = h("div", { className: "card" });
  screen("Alerts", list);
  await section(list, async (el) => {
    const { alerts: items } = await API.get("/v1/alerts", { page_size: 50 });
    el.replaceChildren(alertList(items));
    const unread = items.filter((a) => !a.acknowledge_time);
    if (unread.length) {
      el.append(h("button", { type: "button", className: "secondary", onclick: async () => {
        await Promise.all(unread.map((a) => API.post(`/v1/alerts/${a.alert_id}:ack`, {})));
        refreshBadge();
        alerts();
      } }, "Mark all as read"));
    }
  });
}

// ------------------------------------------------------------------ settings

async function settings() {
  const profile = h("div", { className: "card", id: "profile" });
  const sessions = h("div", { className: "card", id: "sessions" });
  screen("Settings", h("div", { className: "grid" }, profile, sessions));
  const password = h("div", { className: "card", id: "password" }, passwordForm());
  main.querySelector(".grid").append(password);
  await Promise.all([section(profile, async (el) => el.replaceChildren(profileForm())), section(sessions, loadSessions)]);
}

function profileForm() {
  const p = state.profile;
  const inputs = {
    display_name: h("input", { value: p.display_name }),
    default_currency: h("input", { value: p.default_currency, maxLength: 3 }),
    time_zone: h("input", { value: p.time_zone, list: "zones" }),
    locale: h("input", { value: p.locale }),
    first_day_of_week: h("select", {}, ["monday", "sunday", "saturday"].map((d) => h("option", { value: d, selected: d === p.first_day_of_week }, d))),
  };
  const zones = h("datalist", { id: "zones" }, (Intl.supportedValuesOf ? Intl.supportedValuesOf("timeZone") : []).map((z) => h("option", { value: z })));
  const message = h("p", { role: "status" });
  return h("form", { className: "stack", onsubmit: async (event) => {
    event.preventDefault();
    const changed = Object.entries(inputs).filter(([k, el]) => el.value !== p[k]);
    if (!changed.length) return;
    try {
      state.profile = await API.patch("/v1/users/me", { profile: Object.fromEntries(changed.map(([k, el]) => [k, el.value])),
        update_mask: changed.map(([k]) => k).join(",") });
      usePreferences(state.profile);
      message.textContent = "Saved.";
    } catch (error) { message.textContent = errorText(error); }
  } }, h("h2", {}, "Profile"), h("p", { className: "muted" }, p.email),
  field("Name", inputs.display_name), field("Currency", inputs.default_currency), field("Time zone", inputs.time_zone), zones,
  field("Locale (en-IN groups in lakhs)", inputs.locale), field("First day of the week", inputs.first_day_of_week),
  h("button", { type: "submit" }, "Save"), message);
}

// Changing the password ends every other session (auth); this one carries on.
function passwordForm() {
  const current = h("input", { type: "password", name: "current_password", autocomplete: "current-password", required: true });
  const next = h("input", { type: "password", name: "new_password", autocomplete: "new-password", required: true });
  const message = h("p", { role: "status" });
  return h("form", { className: "stack", onsubmit: async (event) => {
    event.preventDefault();
    try {
      const answer = await API.post("/v1/auth/password", { current_password: current.value, new_password: next.value });
      current.value = ""; next.value = "";
      message.textContent = `Password changed; ${answer.revoked_sessions || 0} other sessions signed out.`;
    } catch (error) { message.textContent = error.status === 401 ? "The current password is wrong." : errorText(error); }
  } }, h("h2", {}, "Password"), field("Current password", current), field("New password", next),
  h("button", { type: "submit" }, "Change password"), message);
}

async function loadSessions(el) {
  const { sessions } = await API.get("/v1/auth/sessions");
  el.replaceChildren(h("h2", {}, "Where you are signed in"), h("ul", { className: "alerts", id: "session-list" },
    sessions.map((s) => h("li", {}, h("div", {}, (s.user_agent || "unknown device").replace(/ grpc-python.*$/, ""), s.current ? h("strong", {}, " (this one)") : null),
      h("div", { className: "muted" }, `${s.ip_address} · last used ${dateTime(s.last_used_time)}`),
      s.current ? null : h("button", { type: "button", className: "danger", onclick: async () => {
        try { await API.del(`/v1/auth/sessions/${s.session_id}`); loadSessions(el); } catch (error) { toast(errorText(error)); }
      } }, "Sign out")))));
}

// ------------------------------------------------------------------ routing

const ROUTES = { dashboard, expenses, budgets: budgetsAndBills, alerts, notifications, settings,
  "sms-review": (params) => smsReview(params, { profile: state.profile, categorySelect }) };

async function route() {
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?");
  if (path === "forgot-password") { forgotPasswordScreen(); return; }
  if (path === "reset-password") { resetPasswordScreen(new URLSearchParams(query || "")); return; }
  if (!API.signedIn()) { authScreen(path === "signup" ? "signup" : "login"); return; }
  const name = ROUTES[path] ? path : "dashboard";
  refreshBadge();
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === name) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  try { await ROUTES[name](new URLSearchParams(query || "")); } catch (error) { screen("Something went wrong", failure("This screen", error)); }
}

async function loadProfile() {
  // A new account's profile is made from the signup event: it may take a moment to exist.
  for (let attempt = 0; ; attempt++) {
    try { return await API.get("/v1/users/me"); } catch (error) {
      if (attempt >= 10 || (error.status !== 503 && error.status !== 404)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
  }
}

async function start() {
  // Independent reads, in parallel: each round trip before the first screen counts.
  [state.profile] = await Promise.all([loadProfile(), loadCategories()]);
  usePreferences(state.profile);
  document.getElementById("bar").hidden = false;
  // The review queue exists only for those who let ds read their bank's SMS.
  document.getElementById("sms-nav").hidden = !state.profile.sms_auto_import;
  if (/^#\/?(login|signup)?$/.test(location.hash) || !location.hash) location.hash = "#/dashboard";
  else route();
}

API.whenSignedOut(() => { location.hash = "#/login"; route(); });
document.getElementById("logout").addEventListener("click", async () => {
  await API.logOut();
  state.profile = null;
  location.hash = "#/login";
});
window.addEventListener("hashchange", route);

(async () => {
  if (await API.resume()) {
    try { await start(); return; } catch (error) { screen("expense-mesh", failure("Could not start", error)); return; }
  }
  route();
})();
