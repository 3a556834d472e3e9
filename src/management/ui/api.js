// Calls to the management API: HTTP basic auth on every call (the credentials live in
// sessionStorage, so they go with the tab), errors as ApiError with RabbitMQ's `reason`.

const KEY = "spatemq.credentials";

export class ApiError extends Error {
  constructor(status, error, reason) {
    super(reason);
    this.status = status;
    this.error = error;
    this.reason = reason;
  }
}

let loginFailed = () => {};

/// Called with the ApiError when the broker no longer accepts the stored credentials.
export function onLoginFailed(handler) {
  loginFailed = handler;
}

export function credentials() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || "null");
  } catch {
    return null;
  }
}

export function setCredentials(user, password) {
  sessionStorage.setItem(KEY, JSON.stringify({ user, password }));
}

export function clearCredentials() {
  sessionStorage.removeItem(KEY);
}

/// A path segment: names and vhosts percent-encoded (`/` is `%2F`).
export const enc = (segment) => encodeURIComponent(segment);

function basic(user, password) {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return "Basic " + btoa(binary);
}

function reasonOf(json, text, response) {
  if (json && json.reason !== undefined) {
    return typeof json.reason === "string" ? json.reason : JSON.stringify(json.reason);
  }
  return text || `${response.status} ${response.statusText}`;
}

/// `method` `/api` + `path` with a JSON body; resolves to the JSON answer (null for none).
/// `options.raw`: resolve to {status, json} whatever the status (health checks answer 503).
export async function api(method, path, body, options = {}) {
  const stored = options.credentials || credentials();
  const headers = { Accept: "application/json", "X-Requested-With": "XMLHttpRequest", ...(options.headers || {}) };
  if (stored) headers.Authorization = basic(stored.user, stored.password);
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch("/api" + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch (error) {
    throw new ApiError(0, "network", `the broker did not answer (${error.message})`);
  }
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (options.raw) return { status: response.status, json };
  if (!response.ok) {
    const failure = new ApiError(response.status, (json && json.error) || String(response.status), reasonOf(json, text, response));
    // "not_authorized" is a login that failed; "not_authorised" a right the user lacks.
    if (response.status === 401 && failure.error === "not_authorized" && !options.credentials) loginFailed(failure);
    throw failure;
  }
  return json;
}

export const get = (path, options) => api("GET", path, undefined, options);

/// `path` with query parameters (empty ones left out).
export function withQuery(path, parameters) {
  const query = Object.entries(parameters)
    .filter(([, value]) => value !== undefined && value !== null && value !== "")
    .map(([key, value]) => `${encodeURIComponent(key)}=${encodeURIComponent(value)}`)
    .join("&");
  return query ? `${path}?${query}` : path;
}
