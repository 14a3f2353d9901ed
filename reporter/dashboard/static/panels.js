// The dashboard's panels: health tiles, resource meters, alerts, the API
// table and the three charts. Each render function takes the JSON the API
// returned (see /tmp/brief/json_shapes.md) and redraws its panel in place.

import { barChart, lineChart } from "./charts.js";
import * as fmt from "./format.js";

const STATUS_TEXT = {
  healthy: { icon: "✔", label: "Healthy" },
  warning: { icon: "▲", label: "Warning" },
  critical: { icon: "✖", label: "Critical" },
  unknown: { icon: "?", label: "Unknown" },
};

function el(tag, attributes = {}, text = null) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "className") element.className = value;
    else element.setAttribute(key, value);
  }
  if (text !== null) element.textContent = text;
  return element;
}

// A status shown by icon and word as well as colour.
export function statusBadge(status) {
  const known = STATUS_TEXT[status] ? status : "unknown";
  const badge = el("span", { className: `badge status-${known}`, "data-status": known });
  badge.append(el("span", { className: "badge-icon", "aria-hidden": "true" },
    STATUS_TEXT[known].icon), document.createTextNode(STATUS_TEXT[known].label));
  return badge;
}

function tile(list, field, label, text) {
  const wrapper = el("div", { className: "tile", "data-field": field });
  const value = el("dd");
  fmt.setValue(value, text);
  wrapper.append(el("dt", {}, label), value);
  list.append(wrapper);
  return wrapper;
}

export function renderHealth(health) {
  const tiles = document.getElementById("health-tiles");
  tiles.replaceChildren();
  const statusTile = tile(tiles, "status", "Status", "");
  statusTile.classList.add(`status-${STATUS_TEXT[health.status] ? health.status : "unknown"}`);
  statusTile.querySelector("dd").replaceChildren(statusBadge(health.status));
  tile(tiles, "uptime", "Uptime", fmt.percent(health.uptime));
  tile(tiles, "responseTime", "Avg response", fmt.ms(health.responseTime));
  tile(tiles, "p95ResponseTime", "p95 response", fmt.ms(health.p95ResponseTime));
  tile(tiles, "errorRate", "Error rate", fmt.percent(health.errorRate));
  tile(tiles, "throughput", "Throughput", fmt.perMinute(health.throughput));
  const reasons = document.getElementById("health-reasons");
  reasons.replaceChildren(...(health.reasons || []).map((reason) => el("li", {}, reason)));
}

const RESOURCES = [
  ["cpu", "CPU"],
  ["memory", "Memory"],
  ["disk", "Disk"],
  ["network", "Network"],
];

export function renderResources(usage) {
  const meters = document.getElementById("resource-meters");
  meters.replaceChildren();
  for (const [key, label] of RESOURCES) {
    const value = usage[key];
    const row = el("div", { className: "meter-row", "data-field": key });
    const id = `meter-${key}`;
    row.append(el("span", { className: "meter-label", id }, label));
    const bar = el("div", { className: "meter", role: "meter", "aria-labelledby": id,
      "aria-valuemin": "0", "aria-valuemax": "100" });
    const fill = el("div", { className: "meter-fill" });
    if (fmt.isNumber(value)) {
      bar.setAttribute("aria-valuenow", String(value));
      bar.setAttribute("aria-valuetext", fmt.percent(value));
      fill.style.width = `${Math.max(0, Math.min(100, value))}%`;
      fill.classList.add(value >= 90 ? "high" : value >= 80 ? "elevated" : "normal");
    } else {
      bar.setAttribute("aria-valuetext", "no data");
    }
    bar.append(fill);
    const text = el("span", { className: "meter-value" });
    fmt.setValue(text, fmt.percent(value));
    row.append(bar, text);
    meters.append(row);
  }
  const asOf = document.getElementById("resources-asof");
  asOf.replaceChildren(document.createTextNode("Resource status: "), statusBadge(usage.status));
  const when = fmt.dateTime(usage.asOf);
  if (when) asOf.append(document.createTextNode(` · as of ${when}`));
}

export function renderAlerts(alerts, onAcknowledge) {
  const container = document.getElementById("alerts");
  document.getElementById("alert-count").textContent = alerts.length ? `(${alerts.length})` : "";
  if (!alerts.length) {
    container.replaceChildren(el("p", { className: "muted", "data-empty": "alerts" },
      "No active alerts."));
    return;
  }
  const list = el("ul", { className: "alert-list" });
  for (const alert of alerts) list.append(alertItem(alert, onAcknowledge));
  container.replaceChildren(list);
}

function alertItem(alert, onAcknowledge) {
  const item = el("li", { className: `alert severity-${alert.severity}`,
    "data-alert-id": String(alert.id), "data-state": alert.state });
  const head = el("div", { className: "alert-head" });
  const severity = el("span", { className: `badge severity-${alert.severity}` });
  severity.append(el("span", { className: "badge-icon", "aria-hidden": "true" },
    alert.severity === "critical" ? "✖" : "▲"), document.createTextNode(alert.severity));
  head.append(severity, el("span", { className: "alert-message" }, alert.message));
  item.append(head);
  const facts = [];
  const since = fmt.dateTime(alert.startedAt);
  if (since) facts.push(`since ${since}`);
  if (fmt.isNumber(alert.value)) {
    facts.push(`value ${fmt.fixed(alert.value, 2)}`
      + (fmt.isNumber(alert.threshold) ? ` (threshold ${fmt.fixed(alert.threshold, 2)})` : ""));
  }
  item.append(el("p", { className: "alert-facts muted" }, facts.join(" · ")));
  if (alert.acknowledgedAt) {
    item.append(el("p", { className: "alert-ack" }, `Acknowledged by ${alert.acknowledgedBy || "?"}`
      + ` at ${fmt.dateTime(alert.acknowledgedAt)}`));
  } else {
    const button = el("button", { type: "button", className: "ack",
      "aria-label": `Acknowledge alert: ${alert.message}` }, "Acknowledge");
    button.addEventListener("click", () => onAcknowledge(alert, button));
    item.append(button);
  }
  return item;
}

// ---- the API table, sortable by any column (nulls always last)

const TEXT_KEYS = new Set(["endpoint", "lastErrorAt"]);

function sortValue(row, key) {
  if (key === "endpoint") return `${row.endpoint} ${row.method}`;
  return row[key];
}

export function sortRows(rows, sort) {
  const direction = sort.dir === "asc" ? 1 : -1;
  return [...rows].sort((a, b) => {
    const x = sortValue(a, sort.key);
    const y = sortValue(b, sort.key);
    const xMissing = x === null || x === undefined || x === "";
    const yMissing = y === null || y === undefined || y === "";
    if (xMissing || yMissing) return xMissing === yMissing ? 0 : xMissing ? 1 : -1;
    if (TEXT_KEYS.has(sort.key)) return direction * String(x).localeCompare(String(y));
    return direction * (x - y);
  });
}

function cell(text, className = "num") {
  const td = el("td", { className });
  fmt.setValue(td, text);
  return td;
}

export function renderApiTable(rows, sort) {
  const table = document.getElementById("api-table");
  for (const th of table.querySelectorAll("th[data-key]")) {
    th.setAttribute("aria-sort", th.dataset.key === sort.key
      ? (sort.dir === "asc" ? "ascending" : "descending") : "none");
  }
  const body = table.tBodies[0];
  if (!rows.length) {
    const empty = el("tr");
    empty.append(el("td", { colspan: "7", className: "muted" }, "No API traffic in the window."));
    body.replaceChildren(empty);
    return;
  }
  body.replaceChildren(...sortRows(rows, sort).map(apiRow));
}

// A route with line-break opportunities after each "/", so long routes wrap at segments.
function routeCode(route) {
  const code = el("code");
  route.split(/(?<=\/)/).forEach((part, i) => {
    if (i) code.append(el("wbr"));
    code.append(document.createTextNode(part));
  });
  return code;
}

function apiRow(row) {
  const tr = el("tr", { "data-endpoint": `${row.method} ${row.endpoint}` });
  const name = el("th", { scope: "row" });
  name.append(el("span", { className: "method" }, row.method), document.createTextNode(" "),
    routeCode(row.endpoint));
  const lastError = el("td", { className: "last-error" });
  if (row.lastError) {
    lastError.append(el("span", {}, row.lastError));
    const when = fmt.dateTime(row.lastErrorAt);
    if (when) lastError.append(el("span", { className: "muted" }, ` (${when})`));
  } else {
    fmt.setValue(lastError, null);
  }
  tr.append(name, cell(fmt.count(row.avgResponseTime)), cell(fmt.count(row.p95ResponseTime)),
    cell(fmt.percent(row.successRate)), cell(fmt.count(row.callsPerHour)),
    cell(fmt.count(row.errorCount)), lastError);
  return tr;
}

// ---- the charts

export function renderCharts(analytics, thresholdMs) {
  const range = analytics.timeRange;
  const series = analytics.series || {};
  lineChart(document.getElementById("chart-response-time"), {
    title: "Response time", unit: "ms", start: range.start, end: range.end,
    threshold: { value: thresholdMs, label: "threshold" },
    series: [
      { key: "responseTime", label: "Average", className: "s-avg", points: series.responseTime },
      { key: "responseTimeP95", label: "p95", className: "s-p95", points: series.responseTimeP95 },
    ],
  });
  const endpoints = [...(analytics.endpoints || [])]
    .sort((a, b) => (b.requests || 0) - (a.requests || 0)).slice(0, 10);
  barChart(document.getElementById("chart-endpoints"), {
    title: "Response time per endpoint (busiest 10)", unit: "ms",
    threshold: { value: thresholdMs },
    measures: [
      { key: "avg", label: "Average", className: "s-avg" },
      { key: "p95", label: "p95", className: "s-p95" },
    ],
    rows: endpoints.map((e) => ({
      label: `${e.method} ${e.endpoint}`,
      values: { avg: e.avgResponseTime, p95: e.p95ResponseTime },
    })),
  });
  lineChart(document.getElementById("chart-resources"), {
    title: "Resource usage", unit: "%", start: range.start, end: range.end, yMax: 100,
    series: RESOURCES.map(([key, label]) => ({
      key, label, className: `s-${key}`, points: series[key],
    })),
  });
}
