// The console's shell: sign-in, the hash router (#/functions, #/function/NAME,
// #/invoke, #/workers, #/charts) and each view's lifetime: a view gets an
// AbortSignal that fires when the operator leaves it, which ends its polling.
import { api, clearToken, setToken, token } from "./api.js";
import { clear, h, showError } from "./dom.js";
import { functionsView } from "./functions.js";
import { functionView } from "./function.js";
import { invokeView } from "./invoke.js";
import { workersView } from "./workers.js";
import { chartsView } from "./charts.js";

const $ = (id) => document.getElementById(id);
let leave = null;

async function signIn(candidate) {
  setToken(candidate);
  try {
    // An admin route: it proves the token is the admin token (management
    // routes are open on a server without one).
    await api("GET", "/admin/workers");
    return null;
  } catch (e) {
    clearToken();
    return e;
  }
}

function showLogin(message) {
  if (leave) leave.abort();
  $("nav").hidden = true;
  clear($("view"));
  $("login").hidden = false;
  showError($("login-error"), message);
  $("token").focus();
}

function route() {
  if (!token()) return showLogin("");
  $("login").hidden = true;
  $("nav").hidden = false;
  if (leave) leave.abort();
  leave = new AbortController();
  const signal = leave.signal;
  const [, section = "functions", arg] = (location.hash || "#/functions").split("/").map(decodeURIComponent);
  for (const a of $("nav").querySelectorAll("a")) {
    a.toggleAttribute("aria-current", a.getAttribute("href") === `#/${section}`);
    if (a.hasAttribute("aria-current")) a.setAttribute("aria-current", "page");
  }
  const view = clear($("view"));
  const views = { functions: functionsView, function: functionView, invoke: invokeView, workers: workersView, charts: chartsView };
  const render = views[section] || functionsView;
  render(view, { arg, signal, onAuthError }).catch((e) => {
    if (e.name !== "AbortError") view.append(h("p", { class: "error", role: "alert" }, String(e)));
  });
}

// A 401/403 after sign-in (token rotated, server restarted with another one).
function onAuthError(e) {
  if (e && (e.status === 401 || e.status === 403)) {
    clearToken();
    showLogin(`Signed out: ${e}`);
    return true;
  }
  return false;
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const button = ev.target.querySelector("button");
  button.disabled = true;
  showError($("login-error"), "");
  const e = await signIn($("token").value.trim());
  button.disabled = false;
  if (e) {
    showError($("login-error"), e.code === "admin_disabled"
      ? `${e.message}: start the server with an admin token to use the console`
      : `Sign-in failed: ${e}`);
    $("token").select();
    return;
  }
  $("token").value = "";
  route();
  $("main").focus();
});

$("logout").addEventListener("click", () => {
  clearToken();
  showLogin("");
});

window.addEventListener("hashchange", route);
route();
