// Notifications: the in-app feed (cursor pages, unread filter, mark read), the unread badge,
// preferences (event type × channel, quiet hours, digest) and contact points with phone
// verification. All on the notification service's public routes.
import * as API from "./api.js";
import { dateTime } from "./format.js";
import { h, field, toast, errorText, screen, section } from "./ui.js";

// Event types a person may route, as the notification service names them
// ([notification.sources] of config/mesh.toml); the service refuses any other.
const SOURCES = [
  ["alert.raised", "Budget, bill and spending alerts"],
  ["user.registered", "Welcome message"],
];
// in_app always receives (the service keeps it whenever the source's defaults hold it).
const CHANNELS = [["in_app", "In app"], ["email", "Email"], ["sms", "SMS"], ["whatsapp", "WhatsApp"], ["webhook", "Webhook"]];
const DEFAULT_CHANNELS = ["in_app", "email"];
const CODE_CHANNELS = new Set(["sms", "whatsapp"]);
const PAGE_SIZE = 20;

// The badge in the bar: the feed's unread_count (one notification fetched), refreshed on
// every screen change and after marking read.
export async function refreshBadge() {
  const badge = document.getElementById("unread");
  try {
    const { unread_count: count = 0 } = await API.get("/v1/notifications", { page_size: 1, unread_only: true });
    badge.textContent = count > 99 ? "99+" : String(count);
    badge.hidden = count === 0;
    badge.setAttribute("aria-label", `${count} unread`);
  } catch { badge.hidden = true; }
}

export async function notifications(params) {
  const feed = h("div", { className: "card wide", id: "notification-feed" });
  const preferences = h("div", { className: "card wide", id: "notification-preferences" });
  const contacts = h("div", { className: "card", id: "contact-points" });
  screen("Notifications", h("div", { className: "grid" }, feed, preferences, contacts));
  await Promise.all([
    section(feed, (el) => loadFeed(el, params.get("unread") === "1")),
    section(preferences, loadPreferences),
    section(contacts, loadContactPoints),
  ]);
}

// ------------------------------------------------------------------ feed

async function loadFeed(el, unreadOnly) {
  const list = h("ul", { className: "alerts", id: "notification-list" });
  const count = h("p", { className: "muted", role: "status", id: "unread-count" });
  const more = h("button", { type: "button", className: "secondary", hidden: true }, "Load more");
  const filter = h("input", { type: "checkbox", name: "unread_only", checked: unreadOnly, onchange: () => {
    location.hash = filter.checked ? "#/notifications?unread=1" : "#/notifications";
  } });
  let pageToken = "";
  async function page() {
    more.disabled = true;
    try {
      const answer = await API.get("/v1/notifications", { page_size: PAGE_SIZE, page_token: pageToken, unread_only: unreadOnly || "" });
      for (const n of answer.notifications) list.append(notificationItem(n, unreadOnly));
      count.textContent = `${answer.unread_count || 0} unread`;
      pageToken = answer.next_page_token || "";
      more.hidden = !pageToken;
      if (!list.children.length) list.append(h("li", { className: "muted" }, unreadOnly ? "Nothing unread." : "No notifications yet."));
    } catch (error) { toast(errorText(error)); } finally { more.disabled = false; }
  }
  more.addEventListener("click", page);
  const markAll = h("button", { type: "button", className: "secondary", onclick: async () => {
    try {
      const { marked_count: marked = 0 } = await API.post("/v1/notifications:read-all", {});
      toast(`${marked} marked as read`);
      refreshBadge();
      await section(el, (again) => loadFeed(again, unreadOnly));
    } catch (error) { toast(errorText(error)); }
  } }, "Mark all as read");
  el.replaceChildren(h("h2", {}, "Inbox"),
    h("div", { className: "row" }, h("label", { className: "inline" }, filter, "Unread only"), markAll), count, list, more);
  await page();
}

function notificationItem(n, unreadOnly) {
  const unread = !n.read_time;
  const item = h("li", { className: unread ? "unread" : "", dataset: { notification: n.notification_id } });
  const markRead = unread ? h("button", { type: "button", className: "link",
    "aria-label": `Mark "${n.title}" as read`, onclick: async () => {
      try {
        const read = await API.post(`/v1/notifications/${n.notification_id}:read`, {});
        if (unreadOnly) item.remove(); else item.replaceWith(notificationItem(read, unreadOnly));
        refreshBadge();
        const count = document.getElementById("unread-count");
        const left = Math.max(0, parseInt(count.textContent, 10) - 1);
        count.textContent = `${left} unread`;
      } catch (error) { toast(errorText(error)); }
    } }, "Mark read") : null;
  item.append(
    h("div", { className: "row" },
      h("span", {}, h("span", { className: `sev-${n.severity}` }, n.severity), " ", h("strong", {}, n.title)),
      unread ? h("span", { className: "badge" }, "new") : null),
    n.body ? h("div", {}, n.body) : null,
    h("div", { className: "row muted" }, h("span", {}, dateTime(n.create_time)), markRead));
  return item;
}

// ------------------------------------------------------------------ preferences

async function loadPreferences(el) {
  const prefs = await API.get("/v1/notificationPreferences");
  const chosen = new Map((prefs.rules || []).map((r) => [r.source, new Set(r.channels)]));
  const boxes = [];
  const table = h("table", { id: "channel-rules" },
    h("caption", { className: "muted" }, "Where each kind of message goes"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Event"),
      CHANNELS.map(([, label]) => h("th", { scope: "col" }, label)))),
    h("tbody", {}, SOURCES.map(([source, label]) => {
      const channels = chosen.get(source) || new Set(DEFAULT_CHANNELS);
      return h("tr", {}, h("th", { scope: "row" }, label), CHANNELS.map(([channel, channelLabel]) => {
        const box = h("input", { type: "checkbox", checked: channel === "in_app" || channels.has(channel),
          disabled: channel === "in_app", "aria-label": `${label}: ${channelLabel}`, dataset: { source, channel } });
        boxes.push(box);
        return h("td", {}, box);
      }));
    })));
  const quiet = prefs.quiet_hours || {};
  const quietStart = h("input", { type: "time", name: "quiet_start", value: quiet.start || "" });
  const quietEnd = h("input", { type: "time", name: "quiet_end", value: quiet.end || "" });
  const digest = h("input", { type: "checkbox", name: "digest", checked: Boolean(prefs.digest) });
  const digestTime = h("input", { type: "time", name: "digest_time", value: prefs.digest_time || "08:00" });
  const message = h("p", { role: "status", id: "preferences-status" });
  el.replaceChildren(h("h2", {}, "Preferences"), h("form", { className: "stack preferences", onsubmit: async (event) => {
    event.preventDefault();
    const rules = SOURCES.map(([source]) => ({ source,
      channels: boxes.filter((b) => b.dataset.source === source && b.checked).map((b) => b.dataset.channel) }));
    try {
      // The route's body is the Preferences themselves; the mask rides in the query.
      await API.patch(`/v1/notificationPreferences?${new URLSearchParams({ update_mask: "rules,quiet_hours,digest,digest_time" })}`,
        { rules, quiet_hours: { start: quietStart.value, end: quietEnd.value }, digest: digest.checked, digest_time: digestTime.value });
      message.textContent = "Saved.";
    } catch (error) { message.textContent = errorText(error); }
  } }, h("div", { className: "table-scroll" }, table),
  h("fieldset", {}, h("legend", {}, `Quiet hours (${prefs.time_zone || "UTC"}; urgent messages still come)`),
    h("div", { className: "filters" }, field("From", quietStart), field("Until", quietEnd))),
  h("label", { className: "inline" }, digest, "Collect minor messages into one a day"),
  field("Daily digest at", digestTime),
  h("button", { type: "submit" }, "Save preferences"), message));
}

// ------------------------------------------------------------------ contact points

// `notice` stays on screen after the reload (a webhook's secret must be copied).
async function loadContactPoints(el, notice = "") {
  const { contact_points: points } = await API.get("/v1/contactPoints");
  const reload = (next = "") => section(el, (again) => loadContactPoints(again, next));
  el.replaceChildren(h("h2", {}, "Contact points"), ...(notice ? [h("p", { className: "notice", role: "status" }, notice)] : []),
    h("ul", { className: "alerts", id: "contact-list" }, points.map((p) => contactItem(p, reload))),
    contactForm(reload));
}

function contactItem(p, reload) {
  const remove = h("button", { type: "button", className: "link", "aria-label": `Remove ${p.address}`, onclick: async () => {
    try { await API.del(`/v1/contactPoints/${p.contact_point_id}`); reload(); } catch (error) { toast(errorText(error)); }
  } }, "Remove");
  return h("li", { dataset: { contact: p.contact_point_id } },
    h("div", { className: "row" }, h("span", {}, h("strong", {}, p.channel), " ", p.address),
      h("span", { className: p.verified ? "ok" : "muted" }, p.verified ? "verified" : "waiting for its code")),
    !p.verified && CODE_CHANNELS.has(p.channel) ? verifyForm(p, reload) : null, remove);
}

// The code went out when the number was added; "Send a new code" adds the number again.
function verifyForm(p, reload) {
  const code = h("input", { name: "code", inputMode: "numeric", autocomplete: "one-time-code", pattern: "[0-9]{4,8}", required: true });
  const message = h("p", { role: "alert", className: "error" });
  return h("form", { className: "filters verify", onsubmit: async (event) => {
    event.preventDefault();
    try {
      await API.post(`/v1/contactPoints/${p.contact_point_id}:verify`, { code: code.value });
      toast("Number verified");
      reload();
    } catch (error) { message.textContent = error.fields.some((v) => v.field === "code") ? "That code is not right, or it expired." : errorText(error); }
  } }, field(`Code sent to ${p.address}`, code), h("button", { type: "submit" }, "Verify"),
  h("button", { type: "button", className: "secondary", onclick: async () => {
    try {
      await API.del(`/v1/contactPoints/${p.contact_point_id}`);
      await API.post("/v1/contactPoints", { channel: p.channel, address: p.address });
      toast("A new code is on its way");
      reload();
    } catch (error) { message.textContent = errorText(error); }
  } }, "Send a new code"), message);
}

function contactForm(reload) {
  const channel = h("select", { name: "channel" }, CHANNELS.filter(([c]) => c !== "in_app").map(([value, label]) => h("option", { value }, label)));
  const address = h("input", { name: "address", required: true, placeholder: "+919800000000 or name@example.com" });
  const message = h("p", { role: "alert", className: "error" });
  return h("form", { className: "stack", id: "contact-form", onsubmit: async (event) => {
    event.preventDefault();
    message.textContent = "";
    try {
      const created = await API.post("/v1/contactPoints", { channel: channel.value, address: address.value.trim() });
      // A webhook's signing secret is shown once, here.
      reload(created.webhook_secret ? `Signing secret, shown only now: ${created.webhook_secret}`
        : CODE_CHANNELS.has(channel.value) ? `We sent a code to ${created.contact_point.address}: enter it below.` : "");
    } catch (error) { message.textContent = errorText(error); }
  } }, h("h3", {}, "Add a contact point"), field("Channel", channel), field("Address", address),
  h("button", { type: "submit" }, "Add"), message);
}
