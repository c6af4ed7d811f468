// Numbers and dates for the dashboard page. Amounts arrive as exact decimal strings and are formatted
// without going through floats; charts use Number() for positions only.
"use strict";

const DashboardFormat = (() => {
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const BUCKET_NAMES = { DAY: "day", WEEK: "week", MONTH: "month" };

  function parseDecimal(text) {
    const match = /^(-?)(\d+)(?:\.(\d+))?$/.exec(String(text));
    if (!match) return null;
    return { negative: match[1] === "-", whole: match[2].replace(/^0+(?=\d)/, ""), fraction: match[3] || "" };
  }
  const group = (digits) => digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const sign = (negative) => (negative ? "\u2212" : "");

  // What the API suppressed (null: too few accounts behind the figure) reads as this.
  const SUPPRESSED = "suppressed";
  const isSuppressed = (value) => value === null || value === undefined;

  /** An amount as the API gives it (points keep their unit's decimals), with thousands separators. */
  function formatAmount(text) {
    if (isSuppressed(text)) return SUPPRESSED;
    const d = parseDecimal(text);
    return d ? sign(d.negative && /[1-9]/.test(d.whole + d.fraction)) + group(d.whole) + (d.fraction ? "." + d.fraction : "")
      : String(text);
  }
  const formatCount = (value) => formatAmount(String(value));

  function scaled(text, places) { // the value × 10^places as a BigInt (the API's grams have at most 3 decimals)
    const d = parseDecimal(text);
    if (!d) return 0n;
    const digits = BigInt(d.whole + (d.fraction + "0".repeat(places)).slice(0, places));
    return d.negative ? -digits : digits;
  }
  function roundedFixed(milligrams, divisor, places) { // milligrams ÷ divisor, half away from zero, `places` decimals
    const negative = milligrams < 0n;
    const magnitude = negative ? -milligrams : milligrams;
    const digits = ((magnitude + divisor / 2n) / divisor).toString().padStart(places + 1, "0");
    const cut = digits.length - places;
    return sign(negative && /[1-9]/.test(digits)) + group(digits.slice(0, cut)) + "." + digits.slice(cut);
  }

  /** Grams CO2e: under 1 kg in grams, under 1 t in kg, above in t (two decimals). */
  function formatMass(gramsText) {
    if (isSuppressed(gramsText)) return SUPPRESSED;
    const mg = scaled(gramsText, 3);
    const magnitude = mg < 0n ? -mg : mg;
    if (magnitude < 1000000n) {
      const d = parseDecimal(gramsText);
      const fraction = d ? d.fraction.replace(/0+$/, "") : "";
      return (d ? sign(mg < 0n) + group(d.whole) + (fraction ? "." + fraction : "") : String(gramsText)) + " g";
    }
    if (magnitude < 1000000000n) return roundedFixed(mg, 10000n, 2) + " kg";
    return roundedFixed(mg, 10000000n, 2) + " t";
  }

  function massAxis(maxGrams) { // a unit for an axis whose largest value is maxGrams
    if (maxGrams >= 1e6) return { divisor: 1e6, suffix: "t" };
    if (maxGrams >= 1e3) return { divisor: 1e3, suffix: "kg" };
    return { divisor: 1, suffix: "g" };
  }
  const shortNumber = (value) => value.toLocaleString("en-US", { maximumFractionDigits: 2 });
  const percent = (part, whole) => (whole > 0 ? Math.round((part / whole) * 1000) / 10 + "%" : "–");

  // ---- dates ----

  const isoDate = (date) => date.toISOString().slice(0, 10);
  const parseDate = (text) => new Date(text + "T00:00:00Z");
  function localToday() {
    const now = new Date();
    return new Date(Date.UTC(now.getFullYear(), now.getMonth(), now.getDate()));
  }
  // The latest calendar date now in any of these IANA zones (the cities'), else the browser's: a period
  // ending "today" must include today in every city, wherever the browser is.
  function latestToday(zones) {
    const now = new Date();
    const dates = [];
    for (const zone of zones) {
      try {
        const parts = new Intl.DateTimeFormat("en-US", { timeZone: zone, year: "numeric", month: "2-digit",
          day: "2-digit" }).formatToParts(now);
        const part = (type) => parts.find((p) => p.type === type).value;
        dates.push(`${part("year")}-${part("month")}-${part("day")}`);
      } catch (error) { /* an unknown zone: left out */ }
    }
    return dates.length ? parseDate(dates.sort()[dates.length - 1]) : localToday();
  }
  function truncate(date, granularity) {
    if (granularity === "WEEK") return new Date(date.getTime() - ((date.getUTCDay() + 6) % 7) * 86400000);
    if (granularity === "MONTH") return new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1));
    return date;
  }
  function next(date, granularity) {
    if (granularity === "WEEK") return new Date(date.getTime() + 7 * 86400000);
    if (granularity === "MONTH") return new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1));
    return new Date(date.getTime() + 86400000);
  }
  /** Every bucket's first day in the period, as the API truncates (ISO weeks start on Monday). */
  function bucketStarts(from, to, granularity) {
    const starts = [];
    const end = parseDate(to);
    for (let date = truncate(parseDate(from), granularity); date <= end && starts.length < 400;
      date = next(date, granularity)) starts.push(isoDate(date));
    return starts;
  }
  function bucketLabel(start, granularity) {
    const date = parseDate(start);
    const month = MONTHS[date.getUTCMonth()];
    return granularity === "MONTH" ? `${month} ${date.getUTCFullYear()}` : `${month} ${date.getUTCDate()}`;
  }

  return Object.freeze({ BUCKET_NAMES, SUPPRESSED, isSuppressed, formatAmount, formatCount, formatMass, massAxis, shortNumber, percent, isoDate,
    localToday, latestToday, bucketStarts, bucketLabel });
})();
