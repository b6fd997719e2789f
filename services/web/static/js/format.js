// Numbers and dates per the user's profile: locale (en-IN groups in lakhs and crores)
// and time zone. Amounts arrive as exact decimal strings and are never added up here.
let locale = "en-IN";
let timeZone = "UTC";

export function usePreferences(profile) {
  // The profile's locale names a language ("en"); India's grouping needs the region too.
  const wanted = profile.locale && profile.locale.includes("-") ? profile.locale : `${profile.locale || "en"}-IN`;
  locale = Intl.NumberFormat.supportedLocalesOf([wanted]).length ? wanted : "en-IN";
  timeZone = profile.time_zone || "UTC";
}

export function money(amount, currency) {
  if (amount === undefined || amount === null || amount === "") return "";
  const fraction = (String(amount).split(".")[1] || "").length;
  // Intl formats a decimal string exactly (no float rounding) where supported.
  return new Intl.NumberFormat(locale, {
    style: "currency", currency, minimumFractionDigits: fraction, maximumFractionDigits: Math.max(fraction, 0),
  }).format(String(amount));
}

export function number(value) {
  return new Intl.NumberFormat(locale).format(value);
}

export function date(isoDate) {
  // A calendar date (spent_on) is the user's own day: shown as is, no time zone shift.
  const [y, m, d] = isoDate.split("-").map(Number);
  return new Intl.DateTimeFormat(locale, { day: "numeric", month: "short", year: "numeric", timeZone: "UTC" })
    .format(new Date(Date.UTC(y, m - 1, d)));
}

export function dateTime(iso) {
  if (!iso) return "";
  return new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "short", timeZone }).format(new Date(iso));
}

export function today() {
  // Today in the user's time zone, as YYYY-MM-DD.
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" })
    .formatToParts(new Date());
  const get = (type) => parts.find((p) => p.type === type).value;
  return `${get("year")}-${get("month")}-${get("day")}`;
}

export function monthLabel(isoDate) {
  const [y, m] = isoDate.split("-").map(Number);
  return new Intl.DateTimeFormat(locale, { month: "short", year: "2-digit", timeZone: "UTC" })
    .format(new Date(Date.UTC(y, m - 1, 1)));
}

export function currentLocale() { return locale; }
