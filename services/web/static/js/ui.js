// The screens' shared pieces: element building, feedback, error wording, screen frames.
export const main = document.getElementById("main");

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key in el && key !== "list") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  el.append(...children.flat().filter((c) => c !== undefined && c !== null && c !== false));
  return el;
}

export function field(label, input) { return h("label", {}, label, input); }

export function toast(message) {
  const el = document.getElementById("toast");
  el.textContent = message;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.textContent = ""; }, 4000);
}

export function errorText(error) {
  if (error.status === 409 || error.status === 412) return "Changed elsewhere, reload.";
  const fields = error.fields || [];
  if (fields.length) return fields.map((v) => (v.field ? `${v.field}: ${v.description}` : v.description)).join("; ");
  if (error.status === 429) return "Too many attempts: wait a moment and try again.";
  if (error.status >= 500 || !error.status) return "The service is not answering right now; try again shortly.";
  return error.message;
}

export function screen(title, ...children) {
  document.title = `${title} · expense-mesh`;
  main.replaceChildren(h("h1", {}, title), ...children);
  main.focus({ preventScroll: true });
}

export function failure(where, error) {
  return h("p", { className: "error", role: "alert" }, `${where}: ${errorText(error)}`);
}

export async function section(el, load) {
  // Each card loads on its own: one failing service leaves a message, never a blank screen.
  el.replaceChildren(h("p", { className: "loading" }, "Loading…"));
  try { await load(el); } catch (error) { el.replaceChildren(failure("Could not load", error)); }
}

