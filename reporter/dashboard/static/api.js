// The reporter's JSON API: the bearer token, the {success, data | error}
// envelope, and the token's life in sessionStorage (this tab only).

const TOKEN_KEY = "dealerpulse.token";

export class ApiError extends Error {
  constructor(status, code, message, retryAfterS = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.retryAfterS = retryAfterS; // from Retry-After on 429/503, else null
  }
}

export function storedToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function storeToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// `?token=` is accepted once (so `make run` can print a URL that opens
// straight into the local dealer) and removed from the address bar and history.
export function takeTokenFromUrl() {
  const url = new URL(window.location.href);
  const token = url.searchParams.get("token");
  if (token === null) return;
  url.searchParams.delete("token");
  window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
  if (token.trim()) storeToken(token.trim());
}

export async function call(path, { method = "GET", body, signal } = {}) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${storedToken()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, signal, cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "unavailable", "the reporter cannot be reached");
  }
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok || !payload || payload.success !== true) {
    const error = (payload && payload.error) || {};
    const retryAfter = Number(response.headers.get("Retry-After"));
    throw new ApiError(response.status, error.code || "internal",
      error.message || `HTTP ${response.status} from ${path}`,
      Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : null);
  }
  return payload.data;
}

export function query(path, params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, value);
  }
  const text = search.toString();
  return text ? `${path}?${text}` : path;
}
