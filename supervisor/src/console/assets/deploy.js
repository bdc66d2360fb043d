// Deploying: a zip dropped on the zone (or picked) becomes a new version of the
// named function, uploaded with progress; a refusal shows the server's message.
import { upload } from "./api.js";
import { h } from "./dom.js";

const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

// A function name from a file name: "Hello World.zip" -> "hello-world".
function nameOf(file) {
  return file.name.replace(/\.zip$/i, "").toLowerCase().replace(/[^a-z0-9_-]+/g, "-").replace(/^[-_]+/, "").slice(0, 63);
}

export function deployPanel({ fixedName, onDeployed, emptyHint } = {}) {
  const nameInput = h("input", { id: "deploy-name", name: "name", placeholder: "function name", value: fixedName || "", autocomplete: "off" });
  const fileInput = h("input", { id: "deploy-file", type: "file", accept: ".zip,application/zip" });
  const progress = h("progress", { max: 100, value: 0, hidden: true, "aria-label": "upload progress" });
  const status = h("p", { id: "deploy-status", role: "status" });
  let file = null;

  const send = async () => {
    const name = nameInput.value.trim();
    status.className = "";
    if (!file) { status.className = "error"; status.textContent = "Choose a zip first."; return; }
    if (!NAME.test(name)) {
      status.className = "error";
      status.textContent = "A function name is 1–63 of a-z, 0-9, - and _, starting with a letter or digit.";
      nameInput.focus();
      return;
    }
    progress.hidden = false;
    progress.value = 0;
    status.textContent = `Uploading ${file.name}…`;
    try {
      const done = await upload(name, file, (sent, total) => {
        progress.value = Math.round((sent / total) * 100);
        status.textContent = sent < total ? `Uploading ${file.name}: ${progress.value}%` : "Checking and deploying…";
      });
      progress.value = 100;
      status.className = "ok";
      status.textContent = `Deployed ${done.name} v${done.version} (${done.language}).`;
      if (onDeployed) onDeployed(done);
    } catch (e) {
      progress.hidden = true;
      status.className = "error";
      status.textContent = `Deploy refused: ${e}`;
    }
  };
  const choose = (f) => {
    if (!f) return;
    file = f;
    if (!fixedName && !nameInput.value) nameInput.value = nameOf(f);
    send();
  };
  fileInput.addEventListener("change", () => choose(fileInput.files[0]));
  const zone = h("div", { class: "drop", id: "drop" },
    h("p", {}, emptyHint || "Drop a bundle zip here to deploy it, or pick one:"),
    h("div", { class: "row" },
      h("div", {}, h("label", { for: "deploy-name" }, "Function name"), nameInput),
      h("div", {}, h("label", { for: "deploy-file" }, "Bundle (.zip)"), fileInput)),
    progress, status);
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    choose(e.dataTransfer.files[0]);
  });
  return h("section", { class: "card", "aria-labelledby": "deploy-title" },
    h("h2", { id: "deploy-title" }, fixedName ? `Deploy a new version of ${fixedName}` : "Deploy"), zone);
}
