// Charts for the dashboard page: inline SVG built with DOM calls. Every text from the API is set with
// textContent or setAttribute, never parsed as markup.
"use strict";

const DashboardCharts = (() => {
  const { BUCKET_NAMES, SUPPRESSED, isSuppressed, formatAmount, formatCount, formatMass, massAxis, shortNumber, percent,
    bucketLabel } = DashboardFormat;
  // A figure of a series for a chart: a number, 0 where the bucket is missing (nothing happened), null where
  // the API suppressed it (drawn as a gap, never as a value).
  const seriesValue = (bucket, field) => (!bucket ? 0 : isSuppressed(bucket[field]) ? null : Number(bucket[field]));
  const shortOrSuppressed = (value, divisor = 1) => (value === null ? SUPPRESSED : shortNumber(value / divisor));
  const SVG_NS = "http://www.w3.org/2000/svg";
  const FLOWS = [
    { field: "pointsIssued", label: "Issued", css: "flow-issued" },
    { field: "pointsRedeemed", label: "Redeemed", css: "flow-redeemed" },
    { field: "pointsExpired", label: "Expired", css: "flow-expired" },
  ];

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

  /** Reduction per bucket, a line per city; the legend lists the cities with their period's total. A
   * suppressed bucket breaks the line and its point sits on the zero line, marked `suppressed`. */
  function drawReduction(container, legend, dashboard, starts) {
    const perCity = dashboard.cities.map((city) => {
      const byStart = new Map(city.series.map((bucket) => [bucket.start, bucket]));
      return starts.map((start) => seriesValue(byStart.get(start), "reductionGrams"));
    });
    const values = perCity.flat().filter((value) => value !== null);
    const max = Math.max(0, ...values);
    const unit = massAxis(max);
    const scale = niceScale(Math.min(0, ...values) / unit.divisor, max / unit.divisor);
    const frame = chartFrame(container, "Carbon reduction over time",
      `Reduction credited per ${BUCKET_NAMES[dashboard.granularity]} for ${dashboard.cities.length} cities, in ` +
      `${unit.suffix} CO2e; the largest bucket is ${shortNumber(max / unit.divisor)} ${unit.suffix}.`,
      CHART.width, CHART.height);
    const axes = timeAxes(frame, starts, dashboard.granularity, scale, (tick) => `${shortNumber(tick)} ${unit.suffix}`);
    legend.replaceChildren();
    dashboard.cities.forEach((city, index) => {
      const css = `city-${index % 8}`;
      const line = svg("g", { class: `series ${css}`, "data-city": city.tenant.slug }, frame);
      const points = perCity[index].map((grams, i) => [axes.x(i), axes.y((grams || 0) / unit.divisor)]);
      let run = [];
      const flush = () => {
        if (run.length) svg("polyline", { points: run.map((p) => p.join(",")).join(" "), class: "line" }, line);
        run = [];
      };
      points.forEach((point, i) => { if (perCity[index][i] === null) flush(); else run.push(point); });
      flush();
      points.forEach(([x, y], i) => {
        const grams = perCity[index][i];
        const dot = svg("circle", { cx: x, cy: y, r: 3.2, class: grams === null ? "point suppressed" : "point",
          "data-start": starts[i], "data-value": grams === null ? "" : grams }, line);
        svg("title", {}, dot, `${city.tenant.name}, ${starts[i]}: ` +
          (grams === null ? SUPPRESSED : `${shortNumber(grams / unit.divisor)} ${unit.suffix}`));
      });
      const item = element("li", {}, null, legend);
      element("span", { class: `swatch ${css}`, "aria-hidden": "true" }, null, item);
      item.append(`${city.tenant.name} (${formatMass(city.reductionGrams)})`);
    });
    dataTable(container, `Reduction per ${BUCKET_NAMES[dashboard.granularity]}, ${unit.suffix} CO2e`,
      ["Starting", ...dashboard.cities.map((city) => city.tenant.name)],
      starts.map((start, i) => [start, ...perCity.map((series) => shortOrSuppressed(series[i], unit.divisor))]));
  }

  /** One city's points issued, redeemed and expired per bucket, as grouped bars. */
  function drawPoints(container, city, dashboard, starts) {
    const byStart = new Map(city.series.map((bucket) => [bucket.start, bucket]));
    const rows = starts.map((start) => FLOWS.map((flow) => seriesValue(byStart.get(start), flow.field)));
    const values = rows.flat().filter((value) => value !== null);
    const scale = niceScale(Math.min(0, ...values), Math.max(0, ...values));
    const frame = chartFrame(container, `Points over time: ${city.tenant.name}`,
      `Points issued, redeemed and expired per ${BUCKET_NAMES[dashboard.granularity]} in ${city.tenant.name}, ` +
      `in ${city.tenant.pointUnit.name}.`, CHART.width, CHART.height);
    const axes = timeAxes(frame, starts, dashboard.granularity, scale, shortNumber);
    const barWidth = Math.max(1, (axes.slot * 0.8) / FLOWS.length);
    const bars = svg("g", { class: "bars", "data-city": city.tenant.slug }, frame);
    rows.forEach((row, i) => row.forEach((value, f) => {
      const top = axes.y(Math.max(value || 0, 0));
      const height = Math.abs(axes.y(value || 0) - axes.y(0));
      const x = axes.x(i) - (axes.slot * 0.8) / 2 + f * barWidth;
      const bar = svg("rect", { x, y: top, width: Math.max(barWidth - 0.5, 0.5), height: value ? Math.max(height, 1) : 0,
        class: `bar ${FLOWS[f].css}${value === null ? " suppressed" : ""}`, "data-start": starts[i],
        "data-value": value === null ? "" : value }, bars);
      svg("title", {}, bar, `${starts[i]}: ${FLOWS[f].label.toLowerCase()} ` +
        (value === null ? SUPPRESSED : `${shortNumber(value)} ${city.tenant.pointUnit.name}`));
    }));
    dataTable(container, `${city.tenant.name}: points per ${BUCKET_NAMES[dashboard.granularity]}`,
      ["Starting", ...FLOWS.map((flow) => flow.label)],
      starts.map((start, i) => [start, ...rows[i].map((value) => shortOrSuppressed(value))]));
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

  /** One city's reduction by category and by behaviour, as bars sharing one label column. */
  function drawMix(categoryContainer, behaviorContainer, city) {
    const names = new Map(city.tenant.behaviors.map((behavior) => [behavior.code, behavior.name]));
    const total = Math.max(0, Number(city.reductionGrams));
    const categories = [...city.byCategory].sort((a, b) => Number(b.reductionGrams) - Number(a.reductionGrams))
      .map((category) => ({
        key: category.name, label: titleCase(category.name), value: Number(category.reductionGrams),
        css: categoryCss(category.name),
        text: isSuppressed(category.reductionGrams) ? `${SUPPRESSED} (too few accounts)`
          : `${formatMass(category.reductionGrams)} · ${percent(Number(category.reductionGrams), total)}` }));
    const behaviors = [...city.byBehavior].sort((a, b) => Number(b.reductionGrams) - Number(a.reductionGrams))
      .map((row) => ({
        key: row.behavior, label: row.behavior === "suppressed" ? "Suppressed (small groups)" : names.get(row.behavior) || row.behavior,
        value: Number(row.reductionGrams), css: categoryCss(row.category),
        text: isSuppressed(row.reductionGrams) ? `${SUPPRESSED} (too few accounts)`
          : `${formatMass(row.reductionGrams)} · ${percent(Number(row.reductionGrams), total)} · ` +
            `${formatCount(row.transactions)} records`,
      }));
    const labelWidth = labelRoom([...categories, ...behaviors]); // one label column: the two charts line up
    horizontalBars(categoryContainer, `Reduction by category: ${city.tenant.name}`,
      `Share of ${formatMass(city.reductionGrams)} by behaviour category.`, categories, labelWidth);
    horizontalBars(behaviorContainer, `Reduction by behaviour: ${city.tenant.name}`,
      `Reduction and records per behaviour, coloured by category.`, behaviors, labelWidth);
  }

  /** Points outstanding per city, in its unit; bars compare the reduction they stand for. */
  function drawLiability(container, cities) {
    const items = cities.map((city, index) => {
      const grams = Number(city.pointsOutstanding) * city.tenant.pointUnit.gramsPerPoint; // null: 0, no bar
      return { key: city.tenant.slug, label: city.tenant.name, value: grams, css: `city-${index % 8}`,
        text: isSuppressed(city.pointsOutstanding) ? `${SUPPRESSED} (too few accounts)`
          : `${formatAmount(city.pointsOutstanding)} ${city.tenant.pointUnit.name} (≈ ${formatMass(String(Math.round(grams)))})` };
    });
    horizontalBars(container, "Outstanding liability per city",
      "Points outstanding at the period's end per city, in its own unit; bar length by the reduction they stand for.",
      items);
  }

  return Object.freeze({ element, drawReduction, drawPoints, drawMix, drawLiability });
})();
