// The regulators' dashboard: signs in with a bearer token (sessionStorage, this tab only), reads
// crossCityDashboard from /graphql and draws the table and charts. Every string from the API goes into
// the page through textContent or setAttribute, never as markup. No external resources.
"use strict";

(() => {
  const TOKEN_KEY = "carbon-inclusive.dashboard.token";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const BUCKET_NAMES = { DAY: "day", WEEK: "week", MONTH: "month" };
  const QUERY = `query Dashboard($from: Date!, $to: Date!, $g: Granularity!) {
  crossCityDashboard(from: $from, to: $to, granularity: $g) {
    from to granularity minimumGroupSize
    cities {
      tenant { slug name pointUnit { name singular decimals gramsPerPoint } behaviors { code name } }
      accountsOpened guestAccounts bankLinkedAccounts activeAccounts reductionGrams
      pointsIssued pointsRedeemed pointsExpired pointsOutstanding
      series { start reductionGrams pointsIssued pointsRedeemed pointsExpired }
      byBehavior { behavior category transactions reductionGrams points }
      byCategory { name transactions reductionGrams points }
    }
    totals { accountsOpened guestAccounts bankLinkedAccounts activeAccounts reductionGrams
             pointsIssued pointsRedeemed pointsExpired pointsOutstanding }
  }
}`;
  const ACCOUNT_COLUMNS = [
    { field: "accountsOpened", label: "Opened", title: "Accounts opened in the period" },
    { field: "guestAccounts", label: "Guest", title: "Guest accounts (no bank link) at the period's end" },
    { field: "bankLinkedAccounts", label: "Bank-linked", title: "Bank-linked accounts at the period's end" },
    { field: "activeAccounts", label: "Active", title: "Accounts that earned or spent points in the period, each once" },
  ];
  const POINT_COLUMNS = [
    { field: "pointsIssued", label: "Issued" },
    { field: "pointsRedeemed", label: "Redeemed" },
    { field: "pointsExpired", label: "Expired" },
    { field: "pointsOutstanding", label: "Outstanding", title: "Issued − redeemed − expired, at the period's end" },
  ];
  const FLOWS = [
    { field: "pointsIssued", label: "Issued", css: "flow-issued" },
    { field: "pointsRedeemed", label: "Redeemed", css: "flow-redeemed" },
    { field: "pointsExpired", label: "Expired", css: "flow-expired" },
  ];

  const $ = (id) => document.getElementById(id);
  let current = null; // the last dashboard shown
  let requestNumber = 0;

  // ---- numbers: exact decimal strings from the API, formatted without going through floats ----

  function parseDecimal(text) {
    const match = /^(-?)(\d+)(?:\.(\d+))?$/.exec(String(text));
    if (!match) return null;
    return { negative: match[1] === "-", whole: match[2].replace(/^0+(?=\d)/, ""), fraction: match[3] || "" };
  }
  const group = (digits) => digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const sign = (negative) => (negative ? "\u2212" : "");

  /** An amount as the API gives it (points keep their unit's decimals), with thousands separators. */
  function formatAmount(text) {
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

  // ---- DOM helpers (text only) ----

  function element(name, attributes = {}, text = null, parent = null) {
    const node = document.createElement(name);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
    if (text !== null) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }
  function svg(name, attributes = {}, parent = null, text = null) {
    const node = document.createElementNS(SVG_NS, name);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
    if (text !== null) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }
  function chartFrame(container, title, description, width, height) {
    container.replaceChildren();
    const id = container.id;
    const frame = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart-svg",
      "aria-labelledby": `${id}-title ${id}-desc` }, container);
    svg("title", { id: `${id}-title` }, frame, title);
    svg("desc", { id: `${id}-desc` }, frame, description);
    return frame;
  }
  function niceScale(low, high, count = 4) {
    if (!(high > low)) high = low + 1;
    const raw = (high - low) / count;
    const magnitude = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].find((f) => f * magnitude >= raw) * magnitude;
    const bottom = Math.floor(low / step) * step;
    const top = Math.ceil(high / step) * step;
    const ticks = [];
    for (let value = bottom; value <= top + step / 2; value += step) ticks.push(Math.round(value * 1e6) / 1e6);
    return { bottom, top, ticks };
  }
  function dataTable(container, caption, headers, rows) {
    const details = element("details", { class: "data-table" }, null, container);
    element("summary", {}, "Show the figures as a table", details);
    const table = element("table", {}, null, details);
    element("caption", {}, caption, table);
    const head = element("tr", {}, null, element("thead", {}, null, table));
    headers.forEach((header) => element("th", { scope: "col" }, header, head));
    const body = element("tbody", {}, null, table);
    for (const row of rows) {
      const tr = element("tr", {}, null, body);
      row.forEach((cell, index) => element(index === 0 ? "th" : "td", index === 0 ? { scope: "row" } : {}, cell, tr));
    }
  }

  // ---- charts ----

  const CHART = { width: 640, height: 260, left: 60, right: 16, top: 14, bottom: 34 };

  function timeAxes(frame, starts, granularity, scale, label) {
    const plotWidth = CHART.width - CHART.left - CHART.right;
    const plotHeight = CHART.height - CHART.top - CHART.bottom;
    const y = (value) => CHART.top + plotHeight * (1 - (value - scale.bottom) / (scale.top - scale.bottom));
    const axes = svg("g", { class: "axes", "aria-hidden": "true" }, frame);
    for (const tick of scale.ticks) {
      svg("line", { x1: CHART.left, x2: CHART.width - CHART.right, y1: y(tick), y2: y(tick),
        class: tick === 0 ? "zero" : "grid" }, axes);
      svg("text", { x: CHART.left - 8, y: y(tick) + 4, class: "tick", "text-anchor": "end" }, axes, label(tick));
    }
    const slot = plotWidth / Math.max(starts.length, 1);
    const every = Math.max(1, Math.ceil(starts.length / 8));
    starts.forEach((start, index) => {
      if (index % every !== 0) return;
      svg("text", { x: CHART.left + slot * (index + 0.5), y: CHART.height - CHART.bottom + 18, class: "tick",
        "text-anchor": "middle" }, axes, bucketLabel(start, granularity));
    });
    return { y, slot, x: (index) => CHART.left + slot * (index + 0.5) };
  }

  function drawReduction(dashboard, starts) {
    const container = $("reduction-chart");
    const perCity = dashboard.cities.map((city) => {
      const byStart = new Map(city.series.map((bucket) => [bucket.start, Number(bucket.reductionGrams)]));
      return starts.map((start) => byStart.get(start) || 0);
    });
    const values = perCity.flat();
    const max = Math.max(0, ...values);
    const unit = massAxis(max);
    const scale = niceScale(Math.min(0, ...values) / unit.divisor, max / unit.divisor);
    const frame = chartFrame(container, "Carbon reduction over time",
      `Reduction credited per ${BUCKET_NAMES[dashboard.granularity]} for ${dashboard.cities.length} cities, in ` +
      `${unit.suffix} CO2e; the largest bucket is ${shortNumber(max / unit.divisor)} ${unit.suffix}.`,
      CHART.width, CHART.height);
    const axes = timeAxes(frame, starts, dashboard.granularity, scale, (tick) => `${shortNumber(tick)} ${unit.suffix}`);
    const legend = $("reduction-legend");
    legend.replaceChildren();
    dashboard.cities.forEach((city, index) => {
      const css = `city-${index % 8}`;
      const line = svg("g", { class: `series ${css}`, "data-city": city.tenant.slug }, frame);
      const points = perCity[index].map((grams, i) => [axes.x(i), axes.y(grams / unit.divisor)]);
      svg("polyline", { points: points.map((p) => p.join(",")).join(" "), class: "line" }, line);
      points.forEach(([x, y], i) => {
        const dot = svg("circle", { cx: x, cy: y, r: 3.2, class: "point", "data-start": starts[i],
          "data-value": perCity[index][i] }, line);
        svg("title", {}, dot, `${city.tenant.name}, ${starts[i]}: ${shortNumber(perCity[index][i] / unit.divisor)} ${unit.suffix}`);
      });
      const item = element("li", {}, null, legend);
      element("span", { class: `swatch ${css}`, "aria-hidden": "true" }, null, item);
      item.append(`${city.tenant.name} (${formatMass(city.reductionGrams)})`);
    });
    dataTable(container, `Reduction per ${BUCKET_NAMES[dashboard.granularity]}, ${unit.suffix} CO2e`,
      ["Starting", ...dashboard.cities.map((city) => city.tenant.name)],
      starts.map((start, i) => [start, ...perCity.map((series) => shortNumber(series[i] / unit.divisor))]));
  }

  function drawPoints(dashboard, starts) {
    const container = $("points-chart");
    const city = selectedCity(dashboard, "points-city");
    if (!city) { container.replaceChildren(); return; }
    $("points-unit").textContent = city.tenant.pointUnit.name;
    const byStart = new Map(city.series.map((bucket) => [bucket.start, bucket]));
    const rows = starts.map((start) => FLOWS.map((flow) => Number((byStart.get(start) || {})[flow.field] || 0)));
    const values = rows.flat();
    const scale = niceScale(Math.min(0, ...values), Math.max(0, ...values));
    const frame = chartFrame(container, `Points over time: ${city.tenant.name}`,
      `Points issued, redeemed and expired per ${BUCKET_NAMES[dashboard.granularity]} in ${city.tenant.name}, ` +
      `in ${city.tenant.pointUnit.name}.`, CHART.width, CHART.height);
    const axes = timeAxes(frame, starts, dashboard.granularity, scale, shortNumber);
    const barWidth = Math.max(1, (axes.slot * 0.8) / FLOWS.length);
    const bars = svg("g", { class: "bars", "data-city": city.tenant.slug }, frame);
    rows.forEach((row, i) => row.forEach((value, f) => {
      const top = axes.y(Math.max(value, 0));
      const height = Math.abs(axes.y(value) - axes.y(0));
      const x = axes.x(i) - (axes.slot * 0.8) / 2 + f * barWidth;
      const bar = svg("rect", { x, y: top, width: Math.max(barWidth - 0.5, 0.5), height: value ? Math.max(height, 1) : 0,
        class: `bar ${FLOWS[f].css}`, "data-start": starts[i], "data-value": value }, bars);
      svg("title", {}, bar, `${starts[i]}: ${FLOWS[f].label.toLowerCase()} ${shortNumber(value)} ${city.tenant.pointUnit.name}`);
    }));
    dataTable(container, `${city.tenant.name}: points per ${BUCKET_NAMES[dashboard.granularity]}`,
      ["Starting", ...FLOWS.map((flow) => flow.label)], starts.map((start, i) => [start, ...rows[i].map(shortNumber)]));
  }

  const labelRoom = (items) => Math.min(240, Math.max(80, ...items.map((item) => item.label.length * 7 + 14)));

  function horizontalBars(container, title, description, items, labelWidth = labelRoom(items)) {
    const rowHeight = 30;
    const width = CHART.width;
    const height = Math.max(items.length, 1) * rowHeight + 8;
    const frame = chartFrame(container, title, description, width, height);
    const max = Math.max(0, ...items.map((item) => item.value));
    // Room for the longest label and value text (about 7 px a character at these sizes).
    const textRoom = Math.min(330, Math.max(60, ...items.map((item) => item.text.length * 6.4 + 12)));
    const barSpace = Math.max(80, width - labelWidth - textRoom);
    if (!items.length) svg("text", { x: 8, y: 22, class: "empty" }, frame, "Nothing in this period.");
    items.forEach((item, index) => {
      const y = 4 + index * rowHeight;
      const row = svg("g", { class: "bar-row", "data-name": item.key }, frame);
      svg("text", { x: labelWidth - 10, y: y + 18, class: "label", "text-anchor": "end" }, row, item.label);
      const length = max > 0 ? Math.max((Math.max(item.value, 0) / max) * barSpace, item.value > 0 ? 2 : 0) : 0;
      const bar = svg("rect", { x: labelWidth, y: y + 5, width: length, height: rowHeight - 12, rx: 3,
        class: `bar ${item.css}`, "data-value": item.value }, row);
      svg("title", {}, bar, `${item.label}: ${item.text}`);
      svg("text", { x: labelWidth + length + 8, y: y + 18, class: "value" }, row, item.text);
    });
  }

  const CATEGORY_CSS = { TRAVEL: "cat-travel", CONSUMPTION: "cat-consumption", LIFE: "cat-life" };
  const categoryCss = (name) => CATEGORY_CSS[name] || "cat-other";
  const titleCase = (text) => String(text).charAt(0) + String(text).slice(1).toLowerCase().replace(/_/g, " ");

  function drawMix(dashboard) {
    const city = selectedCity(dashboard, "mix-city");
    if (!city) { $("mix-chart").replaceChildren(); $("category-chart").replaceChildren(); return; }
    const names = new Map(city.tenant.behaviors.map((behavior) => [behavior.code, behavior.name]));
    const total = Math.max(0, Number(city.reductionGrams));
    const categories = [...city.byCategory].sort((a, b) => Number(b.reductionGrams) - Number(a.reductionGrams))
      .map((category) => ({
        key: category.name, label: titleCase(category.name), value: Number(category.reductionGrams),
        css: categoryCss(category.name),
        text: `${formatMass(category.reductionGrams)} · ${percent(Number(category.reductionGrams), total)}` }));
    const behaviors = [...city.byBehavior].sort((a, b) => Number(b.reductionGrams) - Number(a.reductionGrams))
      .map((row) => ({
        key: row.behavior, label: row.behavior === "suppressed" ? "Suppressed (small groups)" : names.get(row.behavior) || row.behavior,
        value: Number(row.reductionGrams), css: categoryCss(row.category),
        text: `${formatMass(row.reductionGrams)} · ${percent(Number(row.reductionGrams), total)} · ${formatCount(row.transactions)} records`,
      }));
    const labelWidth = labelRoom([...categories, ...behaviors]); // one label column: the two charts line up
    horizontalBars($("category-chart"), `Reduction by category: ${city.tenant.name}`,
      `Share of ${formatMass(city.reductionGrams)} by behaviour category.`, categories, labelWidth);
    horizontalBars($("mix-chart"), `Reduction by behaviour: ${city.tenant.name}`,
      `Reduction and records per behaviour, coloured by category.`, behaviors, labelWidth);
  }

  function drawLiability(dashboard) {
    const items = dashboard.cities.map((city) => {
      const grams = Number(city.pointsOutstanding) * city.tenant.pointUnit.gramsPerPoint;
      return { key: city.tenant.slug, label: city.tenant.name, value: grams, css: `city-${dashboard.cities.indexOf(city) % 8}`,
        text: `${formatAmount(city.pointsOutstanding)} ${city.tenant.pointUnit.name} (≈ ${formatMass(String(Math.round(grams)))})` };
    });
    horizontalBars($("liability-chart"), "Outstanding liability per city",
      "Points outstanding at the period's end per city, in its own unit; bar length by the reduction they stand for.",
      items);
  }

  // ---- the comparison table ----

  function cell(row, column, text, value) {
    return element("td", { class: "num", "data-field": column, "data-value": value }, text, row);
  }
  function countCell(row, column, value, minimum) { // null: 1 to minimum − 1 accounts, suppressed by the API
    if (value !== null && value !== undefined) return cell(row, column, formatCount(value), value);
    const node = cell(row, column, `< ${minimum}`, "");
    node.classList.add("suppressed");
    node.title = `Suppressed: fewer than ${minimum} accounts`;
    return node;
  }

  function drawTable(dashboard) {
    const table = $("comparison");
    const head = table.tHead;
    head.replaceChildren();
    const groups = element("tr", {}, null, head);
    element("th", { scope: "col", rowspan: 2 }, "City", groups);
    element("th", { scope: "colgroup", colspan: ACCOUNT_COLUMNS.length }, "Accounts", groups);
    element("th", { scope: "col", rowspan: 2, class: "num", title: "Credited reduction, net of reversals" },
      "Reduction (CO\u2082e)", groups);
    element("th", { scope: "colgroup", colspan: POINT_COLUMNS.length + 1 }, "Points, in each city's unit", groups);
    const names = element("tr", {}, null, head);
    for (const column of ACCOUNT_COLUMNS) element("th", { scope: "col", class: "num", title: column.title }, column.label, names);
    element("th", { scope: "col" }, "Unit", names);
    for (const column of POINT_COLUMNS) {
      element("th", { scope: "col", class: "num", title: column.title || "" }, column.label, names);
    }
    const body = table.tBodies[0];
    body.replaceChildren();
    for (const city of dashboard.cities) {
      const row = element("tr", { "data-city": city.tenant.slug }, null, body);
      const name = element("th", { scope: "row" }, null, row);
      element("span", { class: "city-name" }, city.tenant.name, name);
      element("span", { class: "slug" }, city.tenant.slug, name);
      for (const column of ACCOUNT_COLUMNS) countCell(row, column.field, city[column.field], dashboard.minimumGroupSize);
      cell(row, "reductionGrams", formatMass(city.reductionGrams), city.reductionGrams);
      element("td", { "data-field": "unit", class: "unit" }, city.tenant.pointUnit.name, row);
      for (const column of POINT_COLUMNS) cell(row, column.field, formatAmount(city[column.field]), city[column.field]);
    }
    const foot = table.tFoot;
    foot.replaceChildren();
    const totals = dashboard.totals;
    const row = element("tr", { "data-city": "totals" }, null, foot);
    element("th", { scope: "row" }, `All cities (${dashboard.cities.length})`, row);
    for (const column of ACCOUNT_COLUMNS) countCell(row, column.field, totals[column.field], dashboard.minimumGroupSize);
    cell(row, "reductionGrams", formatMass(totals.reductionGrams), totals.reductionGrams);
    const units = new Set(dashboard.cities.map((city) => city.tenant.pointUnit.name));
    element("td", { "data-field": "unit", class: "unit mixed" },
      units.size === 1 ? [...units][0] : "mixed units, added as they are", row);
    for (const column of POINT_COLUMNS) cell(row, column.field, formatAmount(totals[column.field]), totals[column.field]);
    $("comparison-caption").textContent =
      `${dashboard.from} to ${dashboard.to} (local dates), ${dashboard.cities.length} ` +
      `${dashboard.cities.length === 1 ? "city" : "cities"}`;
  }

  // ---- page state ----

  function selectedCity(dashboard, selectId) {
    const slug = $(selectId).value;
    return dashboard.cities.find((city) => city.tenant.slug === slug) || dashboard.cities[0] || null;
  }
  function fillCitySelect(id, cities) {
    const select = $(id);
    const previous = select.value;
    select.replaceChildren(...cities.map((city) => {
      const option = element("option", { value: city.tenant.slug }, city.tenant.name);
      option.selected = city.tenant.slug === previous;
      return option;
    }));
  }

  function render(dashboard) {
    current = dashboard;
    const starts = bucketStarts(dashboard.from, dashboard.to, dashboard.granularity);
    document.querySelectorAll(".bucket-name").forEach((node) => { node.textContent = BUCKET_NAMES[dashboard.granularity]; });
    document.querySelectorAll(".minimum-group-size").forEach((node) => { node.textContent = String(dashboard.minimumGroupSize); });
    fillCitySelect("points-city", dashboard.cities);
    fillCitySelect("mix-city", dashboard.cities);
    drawTable(dashboard);
    drawReduction(dashboard, starts);
    drawPoints(dashboard, starts);
    drawMix(dashboard);
    drawLiability(dashboard);
    $("figures").hidden = false;
  }

  function showMessage(text, kind = "error") {
    const message = $("message");
    message.textContent = text;
    message.dataset.kind = kind;
    message.hidden = !text;
  }

  function tokenSubject(token) { // for "signed in as" only: the server verifies the token, not this page
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const claims = JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
      return typeof claims.sub === "string" ? claims.sub : null;
    } catch (error) {
      return null;
    }
  }

  function showSignedIn(token) {
    const subject = tokenSubject(token);
    $("signed-in-as").textContent = subject ? `Signed in as ${subject}` : "Signed in";
    $("session").hidden = false;
    $("sign-in").hidden = true;
    $("dashboard").hidden = false;
  }

  function showSignedOut() {
    current = null;
    requestNumber += 1; // answers still in flight are dropped
    $("session").hidden = true;
    $("dashboard").hidden = true;
    $("figures").hidden = true;
    for (const id of ["reduction-chart", "points-chart", "category-chart", "mix-chart", "liability-chart",
      "reduction-legend"]) $(id).replaceChildren();
    const table = $("comparison");
    for (const part of [table.tHead, table.tBodies[0], table.tFoot]) part.replaceChildren();
    $("sign-in").hidden = false;
    $("token").value = "";
  }

  function describeErrors(status, body) {
    const errors = (body && Array.isArray(body.errors) ? body.errors : []).map((error) => {
      const code = error && error.extensions && error.extensions.code ? error.extensions.code : "ERROR";
      return `${code}: ${error && error.message ? error.message : "no message"}`;
    });
    return `The API refused the request (HTTP ${status}). ${errors.join(" · ") || "No error details."}`;
  }

  async function load() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) { showSignedOut(); return; }
    const variables = { from: $("from").value, to: $("to").value, g: $("granularity").value };
    if (!variables.from || !variables.to) { showMessage("Choose both dates of the period."); return; }
    const mine = ++requestNumber;
    $("status").textContent = "Loading…";
    $("refresh").disabled = true;
    let response, body;
    try {
      response = await fetch("/graphql", {
        method: "POST", cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
        headers: { "Content-Type": "application/json", Accept: "application/graphql-response+json, application/json;q=0.9",
          Authorization: `Bearer ${token}` },
        body: JSON.stringify({ query: QUERY, variables, operationName: "Dashboard" }),
      });
      body = await response.json().catch(() => null);
    } catch (error) {
      if (mine === requestNumber) {
        showMessage(`Could not reach the server: ${error.message}`);
        $("status").textContent = "";
        $("refresh").disabled = false;
      }
      return;
    }
    if (mine !== requestNumber) return;
    $("refresh").disabled = false;
    $("status").textContent = "";
    if (response.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showSignedOut();
      showMessage(`Sign-in refused: the token is not valid. ${describeErrors(401, body)}`);
      return;
    }
    if (!response.ok || !body || (body.errors && body.errors.length) || !body.data) {
      $("figures").hidden = true;
      const extra = response.status === 429 ? ` Retry after ${response.headers.get("Retry-After") || "a few"} s.` : "";
      showMessage(describeErrors(response.status, body) + extra);
      return;
    }
    showMessage("");
    render(body.data.crossCityDashboard);
    $("status").textContent = `Updated ${new Date().toLocaleTimeString("en-GB")}.`;
  }

  function signIn(event) {
    event.preventDefault();
    const token = $("token").value.trim().replace(/^Bearer\s+/i, "");
    if (!token) { showMessage("Paste a token first."); return; }
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    showMessage("");
    showSignedIn(token);
    load();
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignedOut();
    showMessage("Signed out: the token is no longer kept in this tab.", "info");
    $("token").focus();
  }

  function start() {
    const today = localToday();
    $("to").value = isoDate(today);
    $("from").value = isoDate(new Date(today.getTime() - 29 * 86400000));
    $("sign-in-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", signOut);
    $("period-form").addEventListener("submit", (event) => { event.preventDefault(); load(); });
    $("granularity").addEventListener("change", load);
    $("points-city").addEventListener("change", () => current && drawPoints(current,
      bucketStarts(current.from, current.to, current.granularity)));
    $("mix-city").addEventListener("change", () => current && drawMix(current));
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) { showSignedIn(token); load(); } else { showSignedOut(); }
  }

  document.addEventListener("DOMContentLoaded", start);
})();
