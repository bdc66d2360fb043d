// Deploying: a zip or a folder dropped on the zone (or picked) becomes a new
// version of the named function, uploaded with progress; a refusal shows the
// server's message. A folder is zipped here (fflate, vendored) with paths
// relative to it, as `polyfaas deploy DIR --no-vendor` would send it; `.git`
// is left out.
import { upload } from "./api.js";
import { h } from "./dom.js";
import { zipSync } from "./vendor/fflate.js";

const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

// A function name from a file name: "Hello World.zip" -> "hello-world".
function nameOf(file) {
  return file.name.replace(/\.zip$/i, "").toLowerCase().replace(/[^a-z0-9_-]+/g, "-").replace(/^[-_]+/, "").slice(0, 63);
}

// [[relative path, File]] -> a zip File named after the folder.
async function zipFolder(folder, entries) {
  const files = {};
  for (const [path, file] of entries) {
    if (path.split("/").includes(".git")) continue;
    files[path] = [new Uint8Array(await file.arrayBuffer()), { mtime: file.lastModified || Date.now() }];
  }
  if (!Object.keys(files).length) throw new Error(`the folder ${folder} has no files`);
  return new File([zipSync(files, { level: 6 })], `${folder}.zip`, { type: "application/zip" });
}

// The files an <input webkitdirectory> picked: paths start with the folder's name.
function pickedFolder(list) {
  const all = [...list];
  const folder = all.length ? all[0].webkitRelativePath.split("/")[0] : "folder";
  return [folder, all.map((f) => [f.webkitRelativePath.split("/").slice(1).join("/"), f])];
}

// Every file under a dropped directory entry, with paths relative to it.
async function droppedFolder(dir) {
  const out = [];
  const walk = async (entry, prefix) => {
    if (entry.isFile) {
      out.push([prefix + entry.name, await new Promise((ok, fail) => entry.file(ok, fail))]);
      return;
    }
    const reader = entry.createReader();
    for (;;) {
      // readEntries answers in batches until an empty one.
      const batch = await new Promise((ok, fail) => reader.readEntries(ok, fail));
      if (!batch.length) break;
      for (const child of batch) await walk(child, entry === dir ? "" : `${prefix}${entry.name}/`);
    }
  };
  await walk(dir, "");
  return out;
}

export function deployPanel({ fixedName, onDeployed, emptyHint } = {}) {
  const nameInput = h("input", { id: "deploy-name", name: "name", placeholder: "function name", value: fixedName || "", autocomplete: "off" });
  const fileInput = h("input", { id: "deploy-file", type: "file", accept: ".zip,application/zip" });
  const folderInput = h("input", { id: "deploy-folder", type: "file", webkitdirectory: "", multiple: "" });
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
  const chooseFolder = async (folder, entries) => {
    try {
      status.className = "";
      status.textContent = `Zipping ${folder}…`;
      choose(await zipFolder(folder, await entries));
    } catch (e) {
      status.className = "error";
      status.textContent = `Cannot deploy that folder: ${e.message || e}`;
    }
  };
  fileInput.addEventListener("change", () => choose(fileInput.files[0]));
  folderInput.addEventListener("change", () => {
    const [folder, entries] = pickedFolder(folderInput.files);
    chooseFolder(folder, entries);
  });
  const zone = h("div", { class: "drop", id: "drop" },
    h("p", {}, emptyHint || "Drop a bundle zip or folder here to deploy it, or pick one:"),
    h("div", { class: "row" },
      h("div", {}, h("label", { for: "deploy-name" }, "Function name"), nameInput),
      h("div", {}, h("label", { for: "deploy-file" }, "Bundle (.zip)"), fileInput),
      h("div", {}, h("label", { for: "deploy-folder" }, "or a folder"), folderInput)),
    progress, status);
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const entry = e.dataTransfer.items && e.dataTransfer.items[0] && e.dataTransfer.items[0].webkitGetAsEntry
      ? e.dataTransfer.items[0].webkitGetAsEntry() : null;
    if (entry && entry.isDirectory) chooseFolder(entry.name, droppedFolder(entry));
    else choose(e.dataTransfer.files[0]);
  });
  return h("section", { class: "card", "aria-labelledby": "deploy-title" },
    h("h2", { id: "deploy-title" }, fixedName ? `Deploy a new version of ${fixedName}` : "Deploy"), zone);
}
