// The SMS review queue (ds): messages ds parsed but would not book on its own. Each can be
// accepted with corrections (amount, merchant, category; empty keeps ds's reading) or
// rejected. Shown only while the profile's sms_auto_import is on.
import * as API from "./api.js";
import { money, date, dateTime } from "./format.js";
import { h, field, toast, errorText, screen, section } from "./ui.js";

export async function smsReview(_params, context) {
  if (!context.profile.sms_auto_import) {
    screen("SMS review", h("p", { className: "card muted" }, "SMS auto-import is off, so there is nothing to review."));
    return;
  }
  const queue = h("div", { className: "card wide", id: "sms-reviews" });
  screen("SMS review", queue);
  await section(queue, (el) => loadQueue(el, context));
}

async function loadQueue(el, context) {
  const list = h("ul", { className: "alerts", id: "review-list" });
  const more = h("button", { type: "button", className: "secondary", hidden: true }, "Load more");
  const status = h("p", { className: "muted", role: "status", id: "review-status" });
  let pageToken = "";
  async function page() {
    more.disabled = true;
    try {
      const answer = await API.get("/v1/sms/reviews", { page_size: 20, page_token: pageToken });
      for (const review of answer.reviews || []) list.append(reviewItem(review, context, settled));
      pageToken = answer.next_page_token || "";
      more.hidden = !pageToken;
      settled();
    } catch (error) { toast(errorText(error)); } finally { more.disabled = false; }
  }
  function settled() { status.textContent = list.children.length ? `${list.children.length} to review` : "Nothing to review."; }
  more.addEventListener("click", page);
  el.replaceChildren(h("h2", {}, "Messages to check"), status, list, more);
  await page();
}

function reviewItem(review, context, settled) {
  const parsed = review.parsed || {};
  const amount = h("input", { name: "amount", inputMode: "decimal", value: parsed.amount || "", pattern: "[0-9]+(\\.[0-9]{1,3})?" });
  const merchant = h("input", { name: "counterparty", value: parsed.counterparty || "" });
  const category = context.categorySelect(parsed.suggested_category_id || "", true);
  const message = h("p", { role: "alert", className: "error" });
  const item = h("li", { dataset: { review: review.review_id } });
  // Only what the reviewer changed goes as a correction (a changed merchant or category
  // teaches ds that merchant's rule).
  function corrections() {
    const changed = {};
    if (amount.value && amount.value !== parsed.amount) changed.amount = amount.value;
    if (merchant.value.trim() && merchant.value.trim() !== parsed.counterparty) changed.counterparty = merchant.value.trim();
    if (category.value && category.value !== parsed.suggested_category_id) changed.category_id = category.value;
    return changed;
  }
  async function decide(action, body) {
    message.textContent = "";
    try {
      await API.post(`/v1/sms/reviews/${review.review_id}:${action}`, body);
      item.remove();
      settled();
      toast(action === "accept" ? "Booked as an expense" : "Dropped");
    } catch (error) { message.textContent = errorText(error); }
  }
  const sender = review.message ? review.message.sender : "";
  item.append(
    h("div", { className: "row" }, h("strong", {}, sender || "SMS"), h("span", { className: "muted" }, dateTime(review.create_time))),
    h("blockquote", { className: "sms" }, review.message ? review.message.body : ""),
    h("p", { className: "muted" }, [
      parsed.amount ? `Read as ${money(parsed.amount, parsed.currency || "INR")}` : "No amount read",
      parsed.counterparty ? ` at ${parsed.counterparty}` : "", parsed.txn_date ? ` on ${date(parsed.txn_date)}` : "",
      parsed.reason ? ` · ${parsed.reason}` : ""].join("")),
    h("form", { className: "filters", onsubmit: (event) => { event.preventDefault(); decide("accept", { corrections: corrections() }); } },
      field("Amount", amount), field("Merchant", merchant), field("Category", category),
      h("button", { type: "submit" }, "Accept"),
      h("button", { type: "button", className: "danger", onclick: () => decide("reject", {}) }, "Reject")),
    message);
  return item;
}
