// Hand-drawn SVG charts for the dashboard: a time-series line chart and a
// horizontal grouped bar chart. No library: the page must work offline, served
// by the reporter alone. Every chart is an <svg role="img"> with a title and a
// text description, and series differ by dash pattern as well as colour.

const SVG_NS = "http://www.w3.org/2000/svg";
// Drawn at the container's pixel width, so text keeps its size on every screen.
const DEFAULT_WIDTH = 640;
const MIN_WIDTH = 260;
const HEIGHT = 240;
const MARGIN = { top: 14, right: 16, bottom: 30, left: 56 };
const Y_TICKS = 4;

let chartSerial = 0;

export function svgElement(name, attributes = {}, text = null) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) {
    element.setAttribute(key, String(value));
  }
  if (text !== null) element.textContent = text;
  return element;
}

// A "nice" upper bound for an axis: 1, 2, 2.5 or 5 times a power of ten.
export function niceMax(value) {
  if (!(value > 0) || !Number.isFinite(value)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const factor of [1, 2, 2.5, 5, 10]) {
    if (value <= factor * power) return factor * power;
  }
  return 10 * power;
}

// Axis ticks and value labels: short, with fewer decimals as values grow.
function formatTick(value) {
  if (value >= 1000) return `${(value / 1000).toLocaleString("en", { maximumFractionDigits: 1 })}k`;
  const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return value.toLocaleString("en", { maximumFractionDigits: digits });
}

function formatTime(ms, spanMs) {
  const options = spanMs > 2 * 86400e3
    ? { month: "short", day: "numeric" }
    : { hour: "2-digit", minute: "2-digit" };
  return new Date(ms).toLocaleString(undefined, options);
}

function widthOf(container) {
  const width = Math.floor(container.clientWidth || DEFAULT_WIDTH);
  return Math.max(MIN_WIDTH, width);
}

function newSvg(container, titleText, description, width, height) {
  chartSerial += 1;
  const id = `chart-${chartSerial}`;
  const svg = svgElement("svg", {
    viewBox: `0 0 ${width} ${height}`,
    width, height,
    role: "img",
    "aria-labelledby": `${id}-title ${id}-desc`,
    preserveAspectRatio: "xMidYMid meet",
  });
  svg.append(svgElement("title", { id: `${id}-title` }, titleText));
  svg.append(svgElement("desc", { id: `${id}-desc` }, description));
  container.replaceChildren(svg);
  return svg;
}

function emptyMessage(svg, plot, text) {
  svg.append(svgElement("text", {
    x: (plot.left + plot.right) / 2, y: (plot.top + plot.bottom) / 2, "text-anchor": "middle",
    class: "chart-empty",
  }, text));
}

function drawYAxis(svg, yMax, unit, plot) {
  const axis = svgElement("g", { class: "axis axis-y" });
  for (let i = 0; i <= Y_TICKS; i += 1) {
    const value = (yMax * i) / Y_TICKS;
    const y = plot.y(value);
    axis.append(svgElement("line", { x1: plot.left, x2: plot.right, y1: y, y2: y, class: "grid" }));
    axis.append(svgElement("text", {
      x: plot.left - 6, y: y + 4, "text-anchor": "end",
    }, `${formatTick(value)}${i === Y_TICKS ? ` ${unit}` : ""}`));
  }
  svg.append(axis);
}

function drawXAxis(svg, startMs, endMs, plot) {
  const axis = svgElement("g", { class: "axis axis-x" });
  const span = endMs - startMs;
  const fractions = plot.right - plot.left > 420 ? [0, 0.25, 0.5, 0.75, 1] : [0, 0.5, 1];
  for (const fraction of fractions) {
    const ms = startMs + span * fraction;
    const anchor = fraction === 0 ? "start" : fraction === 1 ? "end" : "middle";
    axis.append(svgElement("text", {
      x: plot.x(ms), y: plot.bottom + 20, "text-anchor": anchor,
    }, formatTime(ms, span)));
  }
  svg.append(axis);
}

// [[isoTime, value|null], ...] -> [{t: ms, v: number|null}] within the range.
function parsePoints(points) {
  return (points || []).map(([time, value]) => ({
    t: Date.parse(time),
    v: typeof value === "number" && Number.isFinite(value) ? value : null,
  })).filter((p) => Number.isFinite(p.t));
}

// A path that breaks at gaps (null values), so missing data is not drawn as a line.
function pathData(points, plot) {
  let d = "";
  let pen = "M";
  for (const p of points) {
    if (p.v === null) { pen = "M"; continue; }
    d += `${pen}${plot.x(p.t).toFixed(1)},${plot.y(p.v).toFixed(1)}`;
    pen = "L";
  }
  return d;
}

function makePlot(width, startMs, endMs, yMax) {
  const left = MARGIN.left;
  const right = width - MARGIN.right;
  const top = MARGIN.top;
  const bottom = HEIGHT - MARGIN.bottom;
  const span = Math.max(1, endMs - startMs);
  return {
    left, right, top, bottom,
    x: (ms) => left + ((ms - startMs) / span) * (right - left),
    y: (v) => bottom - (Math.min(v, yMax) / yMax) * (bottom - top),
  };
}

function drawSeries(svg, series, parsed, plot, unit) {
  const group = svgElement("g", { class: `series ${series.className}`, "data-series": series.key });
  group.append(svgElement("path", { d: pathData(parsed, plot), class: "line" }));
  // One marker per measured point: hover shows the value, tests count them.
  const radius = parsed.length > 200 ? 1.2 : 2.2;
  for (const p of parsed) {
    if (p.v === null) continue;
    const dot = svgElement("circle", {
      cx: plot.x(p.t).toFixed(1), cy: plot.y(p.v).toFixed(1), r: radius,
      class: "point", "data-value": p.v,
    });
    dot.append(svgElement("title", {}, `${series.label} ${new Date(p.t).toLocaleString()}: `
      + `${formatTick(p.v)} ${unit}`));
    group.append(dot);
  }
  svg.append(group);
}

function drawThreshold(svg, threshold, plot, unit) {
  const y = plot.y(threshold.value);
  const group = svgElement("g", { class: "threshold", "data-threshold": threshold.value });
  group.append(svgElement("line", { x1: plot.left, x2: plot.right, y1: y, y2: y }));
  group.append(svgElement("text", { x: plot.right - 4, y: y - 5, "text-anchor": "end" },
    `${threshold.label ?? "threshold"} ${formatTick(threshold.value)} ${unit}`));
  svg.append(group);
}

function legend(items) {
  const list = document.createElement("ul");
  list.className = "legend";
  for (const item of items) {
    const entry = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = `swatch ${item.className}`;
    swatch.setAttribute("aria-hidden", "true");
    entry.append(swatch, document.createTextNode(item.label));
    list.append(entry);
  }
  return list;
}

function describe(series, parsedList, unit) {
  const parts = series.map((s, i) => {
    const values = parsedList[i].filter((p) => p.v !== null).map((p) => p.v);
    if (!values.length) return `${s.label}: no data`;
    const latest = values[values.length - 1];
    return `${s.label}: ${values.length} points, max ${formatTick(Math.max(...values))} ${unit}, `
      + `latest ${formatTick(latest)} ${unit}`;
  });
  return `${parts.join("; ")}.`;
}

/**
 * Draws a time-series chart into `container` (a <figure>).
 * spec: {title, unit, start, end (ISO), yMax (optional fixed),
 *        threshold: {value, label} (optional),
 *        series: [{key, label, className, points: [[iso, v|null], ...]}]}
 */
export function lineChart(container, spec) {
  const startMs = Date.parse(spec.start);
  const endMs = Date.parse(spec.end);
  const parsedList = spec.series.map((s) => parsePoints(s.points));
  const measured = parsedList.flat().filter((p) => p.v !== null).map((p) => p.v);
  const width = widthOf(container);
  const svg = newSvg(container, spec.title, describe(spec.series, parsedList, spec.unit), width,
    HEIGHT);
  const thresholdValue = spec.threshold ? spec.threshold.value : 0;
  const yMax = spec.yMax ?? niceMax(Math.max(...measured, thresholdValue * 1.25, 0));
  const plot = makePlot(width, startMs, endMs, yMax);
  drawYAxis(svg, yMax, spec.unit, plot);
  drawXAxis(svg, startMs, endMs, plot);
  if (!measured.length) emptyMessage(svg, plot, "No data in this range");
  spec.series.forEach((s, i) => drawSeries(svg, s, parsedList[i], plot, spec.unit));
  if (spec.threshold) drawThreshold(svg, spec.threshold, plot, spec.unit);
  container.append(legend(spec.series));
  if (spec.threshold) {
    container.lastChild.append(Object.assign(document.createElement("li"), {
      className: "legend-threshold",
      textContent: `${spec.threshold.label ?? "threshold"} (${spec.threshold.value} ${spec.unit})`,
    }));
  }
}

/**
 * Horizontal grouped bars, one group per row (an endpoint), one bar per measure.
 * spec: {title, unit, threshold (optional), measures: [{key, label, className}],
 *        rows: [{label, values: {key: number|null}}]}
 */
export function barChart(container, spec) {
  const rows = spec.rows;
  const groupHeight = 12 * spec.measures.length + 12;
  const height = Math.max(90, MARGIN.top + MARGIN.bottom + rows.length * groupHeight);
  const width = widthOf(container);
  const labelWidth = Math.min(190, Math.round(width * 0.38));
  const left = labelWidth + 8;
  const right = width - 44;
  const values = rows.flatMap((r) => spec.measures.map((m) => r.values[m.key]))
    .filter((v) => typeof v === "number");
  const description = rows.length
    ? rows.map((r) => `${r.label}: ${spec.measures.map((m) =>
      `${m.label} ${r.values[m.key] == null ? "no data" : formatTick(r.values[m.key])}`).join(", ")}`)
      .join("; ")
    : "no endpoints";
  const svg = newSvg(container, spec.title, description, width, height);
  const thresholdValue = spec.threshold ? spec.threshold.value : 0;
  const xMax = niceMax(Math.max(...values, thresholdValue * 1.1, 0));
  const x = (v) => left + (Math.min(v, xMax) / xMax) * (right - left);
  if (!rows.length) {
    svg.append(svgElement("text", { x: width / 2, y: height / 2, "text-anchor": "middle",
      class: "chart-empty" }, "No endpoint traffic in this range"));
  }
  const maxChars = Math.max(8, Math.floor(labelWidth / 6.5));
  rows.forEach((row, index) => drawBarGroup(svg, spec, row, MARGIN.top + index * groupHeight, x,
    labelWidth, maxChars));
  drawBarAxis(svg, xMax, spec, x, height);
  container.append(legend(spec.measures));
}

function drawBarGroup(svg, spec, row, top, x, labelWidth, maxChars) {
  const group = svgElement("g", { class: "bar-group", "data-label": row.label });
  const label = row.label.length > maxChars ? `${row.label.slice(0, maxChars - 1)}…` : row.label;
  const labelText = svgElement("text", { x: labelWidth, y: top + 6 * spec.measures.length + 4,
    "text-anchor": "end", class: "bar-label" }, label);
  labelText.append(svgElement("title", {}, row.label));
  group.append(labelText);
  if (spec.measures.every((m) => typeof row.values[m.key] !== "number")) {
    group.append(svgElement("text", { x: x(0) + 4, y: top + 6 * spec.measures.length + 4,
      class: "bar-value chart-empty-row" }, "no timing data"));
  }
  spec.measures.forEach((measure, i) => {
    const value = row.values[measure.key];
    const y = top + i * 12;
    if (typeof value !== "number") return;
    const bar = svgElement("rect", { x: x(0), y, width: Math.max(1, x(value) - x(0)), height: 10,
      class: `bar ${measure.className}`, "data-value": value, "data-measure": measure.key });
    bar.append(svgElement("title", {}, `${row.label} ${measure.label}: ${formatTick(value)} `
      + `${spec.unit}`));
    group.append(bar);
    group.append(svgElement("text", { x: x(value) + 4, y: y + 9, class: "bar-value" },
      formatTick(value)));
  });
  svg.append(group);
}

function drawBarAxis(svg, xMax, spec, x, height) {
  const axis = svgElement("g", { class: "axis axis-x" });
  for (let i = 0; i <= Y_TICKS; i += 1) {
    const value = (xMax * i) / Y_TICKS;
    axis.append(svgElement("line", { x1: x(value), x2: x(value), y1: MARGIN.top - 4,
      y2: height - MARGIN.bottom + 4, class: "grid" }));
    axis.append(svgElement("text", { x: x(value), y: height - 8, "text-anchor": "middle" },
      `${formatTick(value)}${i === Y_TICKS ? ` ${spec.unit}` : ""}`));
  }
  svg.querySelector("desc").after(axis); // behind the bars, after the accessible name
  if (spec.threshold) {
    const tx = x(spec.threshold.value);
    const group = svgElement("g", { class: "threshold", "data-threshold": spec.threshold.value });
    group.append(svgElement("line", { x1: tx, x2: tx, y1: MARGIN.top - 4,
      y2: height - MARGIN.bottom + 4 }));
    svg.append(group);
  }
}
