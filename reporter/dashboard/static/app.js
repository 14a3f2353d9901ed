// DealerPulse dashboard: sign-in, controls and the refresh loop. The panels
// are drawn by panels.js; the JSON API is wrapped by api.js.
//
// Settings: <body data-refresh-s data-threshold-ms> (set by the reporter),
// overridden by ?refresh=SECONDS and ?dealer=ID in the page URL.
// Observable state for people and tests: <body data-state="login|loading|ready|error">
// and data-refresh-count (completed refreshes).

import * as api from "./api.js";
import * as panels from "./panels.js";

const MIN_REFRESH_S = 1;
const MAX_REFRESH_S = 3600;
const DEFAULT_REFRESH_S = 30;
const DEFAULT_THRESHOLD_MS = 200;
const DEALER_KEY = "dealerpulse.dealer";
const RANGE_KEY = "dealerpulse.range";

const $ = (id) => document.getElementById(id);

const state = {
  dealers: [],
  dealerId: "",
  range: "24h",
  sort: { key: "callsPerHour", dir: "desc" },
  apiRows: [],
  alerts: [],
  analytics: null,
  resizeTimer: null,
  autoRefresh: true,
  timer: null,
  inFlight: null,
  generation: 0,
  refreshCount: 0,
};

function readNumber(text, fallback, min, max) {
  const value = Number(text);
  if (text === null || text === undefined || text === "" || !Number.isFinite(value)) {
    return fallback;
  }
  return Math.min(max, Math.max(min, value));
}

const params = new URLSearchParams(window.location.search);
const config = {
  refreshS: readNumber(params.get("refresh") ?? document.body.dataset.refreshS,
    DEFAULT_REFRESH_S, MIN_REFRESH_S, MAX_REFRESH_S),
  thresholdMs: readNumber(document.body.dataset.thresholdMs, DEFAULT_THRESHOLD_MS, 0, 1e9),
};

function setPageState(name) {
  document.body.dataset.state = name;
}

function announce(text) {
  $("status-line").textContent = text;
}

function showError(text) {
  const line = $("error-line");
  line.textContent = text;
  line.hidden = !text;
}

// ---- sign in / out

function showLogin(message = "") {
  stopTimer();
  state.generation += 1;
  $("dashboard").hidden = true;
  $("controls").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  setPageState("login");
  $("token-input").focus();
}

function onLoginSubmit(event) {
  event.preventDefault();
  const input = $("token-input");
  const token = input.value.trim();
  if (!token) {
    $("login-error").textContent = "Enter a token.";
    return;
  }
  api.storeToken(token);
  input.value = "";
  start();
}

function signOut() {
  api.forgetToken();
  showLogin("Signed out.");
}

function handleFailure(error) {
  if (error instanceof api.ApiError && error.status === 401) {
    api.forgetToken();
    showLogin(`The token was refused: ${error.message}`);
    return true;
  }
  return false;
}

// ---- start: dealers, then the first refresh

async function start() {
  if (!api.storedToken()) {
    showLogin();
    return;
  }
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("controls").hidden = false;
  setPageState("loading");
  announce("Loading…");
  try {
    state.dealers = await api.call("/api/dealers");
  } catch (error) {
    if (!handleFailure(error)) {
      setPageState("error");
      showError(`Cannot list dealers: ${error.message}`);
    }
    return;
  }
  chooseDealer();
  $("range-select").value = state.range;
  await refresh();
}

function chooseDealer() {
  const select = $("dealer-select");
  const ids = state.dealers.map((d) => d.dealerId);
  const wanted = params.get("dealer") || sessionStorage.getItem(DEALER_KEY) || "";
  state.dealerId = ids.includes(wanted) ? wanted : ids[0] || "";
  select.replaceChildren(...state.dealers.map((d) => {
    const option = document.createElement("option");
    option.value = d.dealerId;
    option.textContent = d.name && d.name !== d.dealerId ? `${d.name} (${d.dealerId})` : d.dealerId;
    return option;
  }));
  select.value = state.dealerId;
  // A dealer token sees only its own dealer: show its name instead of a selector.
  const single = state.dealers.length === 1;
  select.hidden = single;
  const name = $("dealer-name");
  name.hidden = !single;
  name.textContent = single ? select.options[0].textContent : "";
  if (!state.dealers.length) showError("No dealers are registered yet.");
}

// ---- refresh loop

function stopTimer() {
  if (state.timer !== null) clearTimeout(state.timer);
  state.timer = null;
}

// The next refresh after refreshS, or later when the API asked to wait (429).
function schedule(waitS = 0) {
  stopTimer();
  const delayS = Math.min(MAX_REFRESH_S, Math.max(config.refreshS, waitS));
  if (state.autoRefresh) state.timer = setTimeout(refresh, delayS * 1000);
}

function retryAfter(results) {
  const waits = results.filter((r) => r.status === "rejected" && r.reason.retryAfterS)
    .map((r) => r.reason.retryAfterS);
  return waits.length ? Math.max(...waits) : 0;
}

async function refresh() {
  stopTimer();
  if (!state.dealerId) return;
  if (state.inFlight) state.inFlight.abort();
  const controller = new AbortController();
  state.inFlight = controller;
  const generation = ++state.generation;
  const dealerId = state.dealerId;
  const signal = controller.signal;
  const results = await Promise.allSettled([
    api.call(api.query("/api/ai/performance-monitoring", { dealerId }), { signal }),
    api.call(api.query("/api/ai/performance-analytics", { dealerId, timeRange: state.range }),
      { signal }),
    api.call(api.query("/api/ai/alerts", { dealerId, state: "firing" }), { signal }),
  ]);
  if (generation !== state.generation) return; // a newer refresh or a sign-out took over
  state.inFlight = null;
  const failure = results.find((r) => r.status === "rejected");
  if (failure && handleFailure(failure.reason)) return;
  drawResults(results);
  state.refreshCount += 1;
  document.body.dataset.refreshCount = String(state.refreshCount);
  const waitS = retryAfter(results);
  if (waitS > config.refreshS) announce(`Rate limited: next refresh in ${Math.ceil(waitS)} s`);
  schedule(waitS);
}

function drawResults([monitoring, analytics, alerts]) {
  const problems = [];
  const draw = (result, what, render) => {
    if (result.status === "rejected") {
      problems.push(`${what}: ${result.reason.message}`);
      return;
    }
    try {
      render(result.value);
    } catch (error) {
      problems.push(`${what}: cannot display (${error.message})`);
    }
  };
  draw(monitoring, "health", (data) => {
    panels.renderHealth(data.systemHealth);
    panels.renderResources(data.resourceUsage);
    state.apiRows = data.apiPerformance || [];
    panels.renderApiTable(state.apiRows, state.sort);
  });
  draw(analytics, "analytics", (data) => {
    state.analytics = data;
    panels.renderCharts(data, config.thresholdMs);
  });
  draw(alerts, "alerts", (data) => {
    state.alerts = data;
    panels.renderAlerts(state.alerts, acknowledge);
  });
  showError(problems.join(" · "));
  setPageState(problems.length ? "error" : "ready");
  const every = state.autoRefresh ? ` · refreshing every ${config.refreshS} s` : "";
  announce(`Updated ${new Date().toLocaleTimeString()}${every}`);
}

// ---- acknowledging an alert

async function acknowledge(alert, button) {
  button.disabled = true;
  button.textContent = "Acknowledging…";
  try {
    const updated = await api.call(`/api/ai/alerts/${encodeURIComponent(alert.id)}/acknowledge`,
      { method: "POST", body: {} });
    state.alerts = state.alerts.map((a) => (a.id === updated.id ? updated : a));
    panels.renderAlerts(state.alerts, acknowledge);
    announce(`Alert ${updated.id} acknowledged.`);
  } catch (error) {
    if (handleFailure(error)) return;
    button.disabled = false;
    button.textContent = "Acknowledge";
    showError(`Cannot acknowledge alert ${alert.id}: ${error.message}`);
  }
}

// ---- controls

function onSort(event) {
  const th = event.target.closest("th[data-key]");
  if (!th) return;
  const key = th.dataset.key;
  const textual = th.dataset.type === "text";
  state.sort = state.sort.key === key
    ? { key, dir: state.sort.dir === "asc" ? "desc" : "asc" }
    : { key, dir: textual ? "asc" : "desc" };
  panels.renderApiTable(state.apiRows, state.sort);
}

function onDealerChange(event) {
  state.dealerId = event.target.value;
  sessionStorage.setItem(DEALER_KEY, state.dealerId);
  refresh();
}

function onRangeChange(event) {
  state.range = event.target.value;
  sessionStorage.setItem(RANGE_KEY, state.range);
  refresh();
}

function onAutoRefreshToggle(event) {
  state.autoRefresh = !state.autoRefresh;
  const button = event.currentTarget;
  button.setAttribute("aria-pressed", String(state.autoRefresh));
  button.textContent = state.autoRefresh ? "Auto-refresh on" : "Auto-refresh off";
  if (state.autoRefresh) refresh();
  else {
    stopTimer();
    announce("Auto-refresh paused.");
  }
}

// Charts are drawn at their pixel width: redraw them (not refetch) after a resize.
function onResize() {
  clearTimeout(state.resizeTimer);
  state.resizeTimer = setTimeout(() => {
    if (state.analytics && !$("dashboard").hidden) {
      panels.renderCharts(state.analytics, config.thresholdMs);
    }
  }, 150);
}

function init() {
  const savedRange = sessionStorage.getItem(RANGE_KEY);
  if (savedRange && ["1h", "24h", "7d", "30d"].includes(savedRange)) state.range = savedRange;
  api.takeTokenFromUrl();
  $("login-form").addEventListener("submit", onLoginSubmit);
  $("controls").addEventListener("submit", (event) => event.preventDefault());
  $("api-table").tHead.addEventListener("click", onSort);
  $("dealer-select").addEventListener("change", onDealerChange);
  $("range-select").addEventListener("change", onRangeChange);
  $("refresh-now").addEventListener("click", () => refresh());
  $("auto-refresh").addEventListener("click", onAutoRefreshToggle);
  $("sign-out").addEventListener("click", signOut);
  window.addEventListener("resize", onResize);
  // Catch up at once when a hidden tab becomes visible again.
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && state.autoRefresh && state.dealerId && api.storedToken()) refresh();
  });
  start();
}

init();
