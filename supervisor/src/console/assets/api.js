// Talking to the server: every call carries the admin token as a bearer header
// (never a cookie); errors become ApiError with the server's JSON message.
const KEY = "polyfaas.console.token";

export const token = () => sessionStorage.getItem(KEY);
export const setToken = (t) => sessionStorage.setItem(KEY, t);
export const clearToken = () => sessionStorage.removeItem(KEY);

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
  toString() {
    return `${this.message} (${this.code}, HTTP ${this.status})`;
  }
}

function errorOf(status, statusText, text) {
  let body = null;
  try { body = JSON.parse(text); } catch { /* not JSON: shown as text */ }
  if (body && typeof body.error === "string") return new ApiError(status, body.code || `http_${status}`, body.error);
  return new ApiError(status, `http_${status}`, text || statusText || "request failed");
}

// A management or admin call; resolves to the parsed JSON answer.
export async function api(method, path, { body, headers, signal } = {}) {
  const h = new Headers(headers || {});
  const t = token();
  if (t) h.set("authorization", `Bearer ${t}`);
  let r;
  try {
    r = await fetch(path, { method, headers: h, body, signal, credentials: "omit", cache: "no-store" });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "network", `cannot reach the server: ${e.message}`);
  }
  const text = await r.text();
  if (!r.ok) throw errorOf(r.status, r.statusText, text);
  return text ? JSON.parse(text) : null;
}

// Uploads a zip with progress (fetch has no upload progress; XMLHttpRequest has).
export function upload(name, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", `/api/v1/functions/${encodeURIComponent(name)}`);
    xhr.setRequestHeader("content-type", "application/zip");
    const t = token();
    if (t) xhr.setRequestHeader("authorization", `Bearer ${t}`);
    xhr.withCredentials = false;
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded, e.total); };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(JSON.parse(xhr.responseText));
      else reject(errorOf(xhr.status, xhr.statusText, xhr.responseText));
    };
    xhr.onerror = () => reject(new ApiError(0, "network", "the upload did not reach the server"));
    xhr.send(file);
  });
}
