// Number and time formatting for the dashboard. Unknown numbers arrive as
// null (never 0) and are shown as an em dash with "no data" for screen readers.

export function isNumber(value) {
  return typeof value === "number" && Number.isFinite(value);
}

export function fixed(value, digits) {
  return value.toLocaleString("en", {
    minimumFractionDigits: 0,
    maximumFractionDigits: digits,
  });
}

// Milliseconds: one decimal below 10 ms, whole numbers above.
export function ms(value) {
  if (!isNumber(value)) return null;
  return `${fixed(value, value < 10 ? 1 : 0)} ms`;
}

// Percentages: error rates live near 0.1 %, so small values keep more digits.
export function percent(value) {
  if (!isNumber(value)) return null;
  const digits = value !== 0 && Math.abs(value) < 1 ? 3 : value >= 99 && value < 100 ? 2 : 1;
  return `${fixed(value, digits)} %`;
}

export function count(value) {
  if (!isNumber(value)) return null;
  return fixed(value, value < 10 ? 1 : 0);
}

export function perMinute(value) {
  const text = count(value);
  return text === null ? null : `${text} req/min`;
}

export function dateTime(iso) {
  if (typeof iso !== "string" || !iso) return null;
  const parsed = new Date(iso);
  if (Number.isNaN(parsed.getTime())) return null;
  return parsed.toLocaleString(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

// Fills `element` with `text`, or with a dash and a hidden "no data" when null.
export function setValue(element, text) {
  element.replaceChildren();
  if (text === null || text === undefined) {
    const dash = document.createElement("span");
    dash.textContent = "—";
    dash.setAttribute("aria-hidden", "true");
    const hidden = document.createElement("span");
    hidden.className = "visually-hidden";
    hidden.textContent = "no data";
    element.append(dash, hidden);
    element.classList.add("unknown");
  } else {
    element.textContent = text;
    element.classList.remove("unknown");
  }
}
