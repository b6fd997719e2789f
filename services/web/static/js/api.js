// The page's only way to the API: the access token lives in this module's memory and
// nowhere else; the refresh token is an HttpOnly cookie this code never sees.
let accessToken = null;
let onSignedOut = () => {};

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
  get fields() {
    const violations = [];
    for (const detail of this.body.details || []) {
      for (const v of detail.field_violations || detail.fieldViolations || []) violations.push(v);
    }
    return violations;
  }
}

export function whenSignedOut(callback) { onSignedOut = callback; }
export function signedIn() { return accessToken !== null; }

async function session(action, body) {
  const response = await fetch(`/web/session/${action}`, {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json", "x-em-csrf": "1" },
    body: JSON.stringify(body || {}),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, data);
  if (data.access_token) accessToken = data.access_token;
  return data;
}

export const signUp = (email, password, displayName) =>
  session("signup", { email, password, display_name: displayName });
export const logIn = (email, password) => session("login", { email, password });
// Auth rotates the refresh token on each use and ends the session when a rotated one comes
// back (reuse). Tabs share the cookie: a Web Lock makes their refreshes take turns, so the
// second sends the cookie the first just received.
function refreshSession() {
  return navigator.locks ? navigator.locks.request("em-refresh", () => session("refresh")) : session("refresh");
}

export async function resume() {
  try { return await refreshSession(); } catch { return null; }
}
export async function logOut() {
  try { await session("logout"); } finally { accessToken = null; }
}

let refreshing = null;
async function refreshOnce() {
  refreshing = refreshing || refreshSession().finally(() => { refreshing = null; });
  return refreshing;
}

export async function api(method, path, body, retried = false) {
  const headers = { authorization: `Bearer ${accessToken}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401 && !retried) {
    try { await refreshOnce(); } catch { accessToken = null; onSignedOut(); throw new ApiError(401, { message: "signed out" }); }
    return api(method, path, body, true);
  }
  const text = await response.text();
  let data = {};
  try { data = text ? JSON.parse(text) : {}; } catch { data = { message: text }; }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// The public routes that need no token (password reset).
export async function publicPost(path, body) {
  const response = await fetch(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const get = (path, query) => api("GET", query ? `${path}?${new URLSearchParams(clean(query))}` : path);
export const post = (path, body) => api("POST", path, body || {});
export const patch = (path, body) => api("PATCH", path, body);
export const del = (path, query) => api("DELETE", query ? `${path}?${new URLSearchParams(clean(query))}` : path);

function clean(query) {
  return Object.fromEntries(Object.entries(query).filter(([, v]) => v !== undefined && v !== null && v !== ""));
}

export function requestId() { return crypto.randomUUID(); }
