// The regulators' dashboard: signs in with a bearer token (sessionStorage, this tab only), reads
// crossCityDashboard from /graphql and shows the table and charts (format.js, charts.js). Every string
// from the API goes into the page through textContent or setAttribute, never as markup. No external
// resources.
"use strict";

(() => {
  const TOKEN_KEY = "carbon-inclusive.dashboard.token";
  const { BUCKET_NAMES, isSuppressed, formatAmount, formatCount, formatMass, isoDate, localToday, latestToday,
    bucketStarts } = DashboardFormat;
  const { element } = DashboardCharts;
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

  const $ = (id) => document.getElementById(id);
  let current = null; // the last dashboard shown
  let requestNumber = 0;

  // ---- the comparison table ----

  function cell(row, column, text, value) {
    return element("td", { class: "num", "data-field": column, "data-value": value }, text, row);
  }
  function countCell(row, column, value, minimum) { // null: 1 to minimum − 1 accounts, suppressed by the API
    if (!isSuppressed(value)) return cell(row, column, formatCount(value), value);
    const node = cell(row, column, `< ${minimum}`, "");
    node.classList.add("suppressed");
    node.title = `Suppressed: fewer than ${minimum} accounts`;
    return node;
  }
  function amountCell(row, column, value, minimum, format) { // null: too few accounts behind it
    if (!isSuppressed(value)) return cell(row, column, format(value), value);
    const node = cell(row, column, format(value), "");
    node.classList.add("suppressed");
    node.title = `Suppressed: fewer than ${minimum} accounts behind it`;
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
      amountCell(row, "reductionGrams", city.reductionGrams, dashboard.minimumGroupSize, formatMass);
      element("td", { "data-field": "unit", class: "unit" }, city.tenant.pointUnit.name, row);
      for (const column of POINT_COLUMNS) {
        amountCell(row, column.field, city[column.field], dashboard.minimumGroupSize, formatAmount);
      }
    }
    const foot = table.tFoot;
    foot.replaceChildren();
    const totals = dashboard.totals;
    const row = element("tr", { "data-city": "totals" }, null, foot);
    element("th", { scope: "row" }, `All cities (${dashboard.cities.length})`, row);
    for (const column of ACCOUNT_COLUMNS) countCell(row, column.field, totals[column.field], dashboard.minimumGroupSize);
    amountCell(row, "reductionGrams", totals.reductionGrams, dashboard.minimumGroupSize, formatMass);
    const units = new Set(dashboard.cities.map((city) => city.tenant.pointUnit.name));
    element("td", { "data-field": "unit", class: "unit mixed" },
      units.size === 1 ? [...units][0] : "mixed units, added as they are", row);
    for (const column of POINT_COLUMNS) {
      amountCell(row, column.field, totals[column.field], dashboard.minimumGroupSize, formatAmount);
    }
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

  function drawPoints(dashboard, starts) {
    const city = selectedCity(dashboard, "points-city");
    if (!city) { $("points-chart").replaceChildren(); return; }
    $("points-unit").textContent = city.tenant.pointUnit.name;
    DashboardCharts.drawPoints($("points-chart"), city, dashboard, starts);
  }
  function drawMix(dashboard) {
    const city = selectedCity(dashboard, "mix-city");
    if (!city) { $("category-chart").replaceChildren(); $("mix-chart").replaceChildren(); return; }
    DashboardCharts.drawMix($("category-chart"), $("mix-chart"), city);
  }

  function render(dashboard) {
    current = dashboard;
    const starts = bucketStarts(dashboard.from, dashboard.to, dashboard.granularity);
    document.querySelectorAll(".bucket-name").forEach((node) => { node.textContent = BUCKET_NAMES[dashboard.granularity]; });
    document.querySelectorAll(".minimum-group-size").forEach((node) => { node.textContent = String(dashboard.minimumGroupSize); });
    fillCitySelect("points-city", dashboard.cities);
    fillCitySelect("mix-city", dashboard.cities);
    drawTable(dashboard);
    DashboardCharts.drawReduction($("reduction-chart"), $("reduction-legend"), dashboard, starts);
    drawPoints(dashboard, starts);
    drawMix(dashboard);
    DashboardCharts.drawLiability($("liability-chart"), dashboard.cities);
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

  // Every request of the page: POST /graphql with the token, no cookies, no cache, no referrer.
  function postGraphQL(token, request) {
    return fetch("/graphql", {
      method: "POST", cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
      headers: { "Content-Type": "application/json", Accept: "application/graphql-response+json, application/json;q=0.9",
        Authorization: `Bearer ${token}` },
      body: JSON.stringify(request),
    });
  }

  // The default period ends today in the city furthest ahead (the cities' time zones, read once), unless
  // the reader has chosen dates meanwhile.
  let periodChosen = false;
  let periodDefaulted = false;
  async function defaultPeriod(token) {
    if (periodDefaulted || periodChosen) return;
    let zones = [];
    try {
      const response = await postGraphQL(token, { query: "query CityZones { tenants { timezone } }",
        operationName: "CityZones" });
      const body = await response.json().catch(() => null);
      zones = (body && body.data && body.data.tenants || []).map((tenant) => tenant.timezone);
    } catch (error) { /* the dashboard's own request reports what is wrong */ }
    if (periodChosen || !zones.length) return;  // tried again at the next load (another token, say)
    periodDefaulted = true;
    setPeriod(latestToday(zones));
  }
  function setPeriod(today) {
    $("to").value = isoDate(today);
    $("from").value = isoDate(new Date(today.getTime() - 29 * 86400000));
  }

  async function load() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) { showSignedOut(); return; }
    await defaultPeriod(token);
    const variables = { from: $("from").value, to: $("to").value, g: $("granularity").value };
    if (!variables.from || !variables.to) { showMessage("Choose both dates of the period."); return; }
    const mine = ++requestNumber;
    $("status").textContent = "Loading…";
    $("refresh").disabled = true;
    let response, body;
    try {
      response = await postGraphQL(token, { query: QUERY, variables, operationName: "Dashboard" });
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
    setPeriod(localToday());  // until the cities' zones are known
    for (const id of ["from", "to"]) $(id).addEventListener("change", () => { periodChosen = true; });
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
