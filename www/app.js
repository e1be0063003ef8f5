// The upload page: plain DOM code on top of the browser client package
// (crates/upload-wasm, served by upload-server at /pkg/). The package does
// the uploading (plans, parts, retries, the shared pool of 4 request slots);
// this file only draws it and talks to the file-list endpoints of the API.

const API = `${location.origin}/api/v1`;
const TOKEN_KEY = "upload.token";
// Files per page of the list; `?limit=N` overrides it (the e2e tests use it to
// reach the "More" button with a handful of files).
const PAGE_SIZE = Math.min(100, Math.max(1, Number(new URLSearchParams(location.search).get("limit")) || 20));
// Errors the server (or the client's check before any request) gives for the
// file itself: trying the same file again cannot help, so no "Try again".
const REFUSALS = new Set(["file_too_large", "type_not_accepted", "invalid_request"]);

const $ = (id) => document.getElementById(id);
const els = {
  input: $("files"),
  drop: $("drop"),
  limits: $("limits"),
  queue: $("queue"),
  template: $("upload-item"),
  filesTable: $("files-table"),
  files: $("file-rows"),
  filesStatus: $("files-status"),
  filesHeading: $("files-heading"),
  more: $("more"),
  refresh: $("refresh"),
  announce: $("announce"),
  access: $("access"),
  tokenForm: $("token-form"),
  token: $("token"),
  tokenClear: $("token-clear"),
  tokenState: $("token-state"),
};

let uploader = null;
let config = null; // GET /config, once loaded
const items = new Set(); // uploads shown in the queue

// ---------- formatting ----------

function formatBytes(n) {
  if (!Number.isFinite(n)) return "";
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = -1;
  do {
    v /= 1024;
    u++;
  } while (v >= 1024 && u < units.length - 1);
  // Whole numbers stay whole ("100 MiB", not "100.0 MiB"), as limits usually are.
  const text = Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 1 : 0);
  return `${text} ${units[u]}`;
}

function formatDate(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function formatDuration(s) {
  if (!Number.isFinite(s) || s < 0) return "";
  if (s < 60) return `${Math.ceil(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

function acceptText() {
  const accept = config?.constraints.accept ?? [];
  return accept.length ? accept.join(", ") : "any type";
}

/** Words for an error code (README of upload-wasm, docs/api.md), for the person who picked the file. */
function describe(err, file) {
  const code = err?.code ?? "internal";
  switch (code) {
    case "file_too_large":
      return config ? `Too large: the limit is ${formatBytes(config.constraints.max_file_size)}.` : `Too large. ${err.message}`;
    case "type_not_accepted":
      return `This type is not accepted (accepted: ${acceptText()}).`;
    case "invalid_request":
      return file?.size === 0 ? "This file is empty; empty files cannot be uploaded." : `The server refused this file: ${err.message}`;
    case "network":
      return "Network problem: the server or the storage could not be reached. Check your connection and try again.";
    case "unauthorized":
      return "Not allowed: the access token is missing or has expired. Paste a new one under “Access token”.";
    case "too_many_files":
      return "Too many uploads in progress for your account. Wait for some to finish, then try again.";
    case "rate_limited":
      return "The server is busy right now (too many requests). Try again in a moment.";
    case "storage_unavailable":
      return "The storage did not answer. Try again later.";
    case "upload_expired":
      return "The upload took too long and its time window closed. Try again.";
    case "upload_incomplete":
      return "Not all of the file reached the storage. Try again.";
    case "upload_mismatch":
      return "The storage received something other than this file, so it was discarded. Try again.";
    case "checksum_mismatch":
      return "The file was changed or damaged on the way (checksum mismatch). Try again.";
    case "not_found":
      return "This upload no longer exists on the server.";
    case "aborted":
      return "Cancelled.";
    default:
      return `Upload failed (${code}): ${err?.message ?? "unknown error"}`;
  }
}

// ---------- API ----------

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

/** Calls the API; non-2xx answers throw an Error with the contract's `code`. */
async function api(method, path) {
  const headers = {};
  if (token()) headers.Authorization = `Bearer ${token()}`;
  let res;
  try {
    res = await fetch(`${API}${path}`, { method, headers });
  } catch (e) {
    throw Object.assign(new Error(String(e)), { code: "network" });
  }
  if (!res.ok) {
    let body = null;
    try {
      body = await res.json();
    } catch {}
    const e = new Error(body?.error?.message ?? `HTTP ${res.status}`);
    e.code = body?.error?.code ?? "internal";
    e.status = res.status;
    throw e;
  }
  return res.status === 204 ? null : res.json();
}

// ---------- announcements ----------

let announceTimer = 0;
const pending = [];
/**
 * Queues a sentence for the polite live region. Sentences arriving together
 * are read as one, so several files finishing at once are not cut off by
 * each other.
 */
function announce(text) {
  pending.push(text);
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => {
    els.announce.textContent = pending.splice(0).join(" ");
  }, 150);
}

// ---------- uploads ----------

let itemCount = 0;

class Item {
  constructor(file) {
    this.file = file;
    this.samples = []; // {t, loaded}: the last few seconds, for the speed
    this.milestone = 0; // last quarter announced
    this.settled = false;
    const el = els.template.content.firstElementChild.cloneNode(true);
    const id = `upload-${++itemCount}`;
    this.el = el;
    this.q = (sel) => el.querySelector(sel);
    el.dataset.name = file.name;
    this.q(".name").textContent = file.name;
    this.q(".name").id = `${id}-name`;
    this.q("progress").setAttribute("aria-labelledby", `${id}-name`);
    this.q(".error").id = `${id}-error`;
    this.q(".pause").setAttribute("aria-label", `Pause ${file.name}`);
    this.q(".cancel").setAttribute("aria-label", `Cancel ${file.name}`);
    this.q(".retry").setAttribute("aria-label", `Try ${file.name} again`);
    this.q(".pause").addEventListener("click", () => this.togglePause());
    this.q(".cancel").addEventListener("click", () => this.cancelOrRemove());
    this.q(".retry").addEventListener("click", () => this.start());
    els.queue.append(el);
    items.add(this);
    this.start();
  }

  start() {
    this.settled = false;
    this.samples = [];
    this.milestone = 0;
    this.el.dataset.state = "queued";
    this.q(".error").hidden = true;
    this.q(".error").textContent = "";
    this.q(".note").hidden = true;
    this.q("progress").removeAttribute("aria-describedby");
    this.q(".retry").hidden = true;
    this.q("progress").hidden = false;
    this.q(".pause").hidden = false;
    this.q(".cancel").textContent = "Cancel";
    this.q(".cancel").setAttribute("aria-label", `Cancel ${this.file.name}`);
    this.upload = uploader.upload(this.file, { onProgress: () => this.draw() });
    this.upload.done.then(
      (record) => this.finished(record),
      (err) => this.failed(err),
    );
    this.draw();
  }

  /** Redraws from the upload's own state (called on progress and by the ticker). */
  draw() {
    if (this.settled) return;
    const u = this.upload;
    const { loaded, total } = u;
    // The end states are drawn by finished()/failed() once `done` settles,
    // with the record or the error in hand; until then it is still finishing.
    const state = ["done", "failed", "cancelled"].includes(u.state) ? "completing" : u.state;
    const now = performance.now();
    this.samples.push({ t: now, loaded });
    while (this.samples.length > 2 && now - this.samples[0].t > 3000) this.samples.shift();
    const bar = this.q("progress");
    bar.max = total || 1;
    bar.value = loaded;
    this.el.dataset.state = state;
    if (u.id) this.el.dataset.uploadId = u.id; // lets support (and tests) find it on the server
    const stateText = { queued: "Waiting", uploading: "Uploading", paused: "Paused", completing: "Finishing" }[state] ?? state;
    this.q(".state").textContent = stateText;
    let text = `${formatBytes(loaded)} of ${formatBytes(total)}`;
    if (state === "uploading") {
      const first = this.samples[0];
      const dt = (now - first.t) / 1000;
      if (dt >= 0.4) {
        const speed = (loaded - first.loaded) / dt;
        text += ` · ${formatBytes(Math.round(speed))}/s`;
        if (speed > 0) text += ` · ${formatDuration((total - loaded) / speed)} left`;
      }
    }
    this.q(".bytes").textContent = text;
    this.q(".pause").textContent = state === "paused" ? "Resume" : "Pause";
    this.q(".pause").setAttribute("aria-label", `${state === "paused" ? "Resume" : "Pause"} ${this.file.name}`);
    this.q(".pause").disabled = state === "completing";
    // Quarter milestones for screen readers; the bar itself is not announced.
    const quarter = total ? Math.floor((loaded / total) * 4) : 0;
    if (quarter > this.milestone && quarter < 4) {
      this.milestone = quarter;
      announce(`${this.file.name}: ${quarter * 25}%`);
    }
  }

  /** The client found this file's upload from an earlier visit (resume). */
  resumed({ stored, parts, next }) {
    const note = this.q(".note");
    note.textContent = stored ? `Resumed from part ${next} of ${parts}: ${stored} already uploaded.` : "Resumed an earlier upload of this file.";
    note.hidden = false;
    announce(`${this.file.name}: ${note.textContent}`);
  }

  togglePause() {
    if (this.upload.state === "paused") {
      this.upload.resume();
      announce(`${this.file.name}: resumed`);
    } else {
      this.upload.pause();
      announce(`${this.file.name}: paused`);
    }
    this.samples = [];
    this.draw();
  }

  async cancelOrRemove() {
    if (this.settled) {
      // "Remove": take the finished row away, and keep focus in the list.
      const next = this.el.nextElementSibling ?? this.el.previousElementSibling;
      this.el.remove();
      items.delete(this);
      (next?.querySelector("button:not([hidden])") ?? els.input).focus();
      return;
    }
    this.q(".cancel").disabled = true;
    try {
      await this.upload.cancel();
    } finally {
      this.q(".cancel").disabled = false;
    }
  }

  settle(state, stateText) {
    this.settled = true;
    this.el.dataset.state = state;
    this.q(".state").textContent = stateText;
    this.q(".pause").hidden = true;
    this.q(".cancel").textContent = "Remove";
    this.q(".cancel").setAttribute("aria-label", `Remove ${this.file.name} from this list`);
  }

  finished(record) {
    const bar = this.q("progress");
    bar.max = record.size || 1;
    bar.value = record.size;
    this.q(".bytes").textContent = formatBytes(record.size);
    this.settle("done", "Uploaded");
    announce(`${this.file.name} uploaded.`);
    addFileRow(record, true);
    els.filesTable.hidden = false;
    els.filesStatus.textContent = "";
    announceWhenAllDone();
  }

  failed(err) {
    if (err?.code === "aborted") {
      this.settle("cancelled", "Cancelled");
      this.q(".bytes").textContent = "";
      announce(`${this.file.name}: upload cancelled.`);
    } else {
      const refused = REFUSALS.has(err?.code);
      this.settle("failed", refused ? "Not accepted" : "Failed");
      // A refused file sent nothing: an empty bar and "0 B of" would only be noise.
      if (refused || this.upload.loaded === 0) {
        this.q("progress").hidden = true;
        // Just over the limit rounds to the limit ("1.0 MiB"): give the bytes too.
        const exact = err?.code === "file_too_large" ? ` (${this.file.size.toLocaleString()} bytes)` : "";
        this.q(".bytes").textContent = formatBytes(this.file.size) + exact;
      }
      const message = describe(err, this.file);
      const p = this.q(".error");
      p.textContent = message;
      p.hidden = false;
      p.dataset.code = err?.code ?? "";
      this.q("progress").setAttribute("aria-describedby", p.id);
      this.q(".retry").hidden = REFUSALS.has(err?.code);
      announce(`${this.file.name}: ${message}`);
      if (err?.code === "unauthorized") els.access.open = true;
    }
    announceWhenAllDone();
  }
}

function announceWhenAllDone() {
  const all = [...items];
  if (all.length > 1 && all.every((i) => i.settled)) {
    const ok = all.filter((i) => i.el.dataset.state === "done").length;
    announce(`All uploads finished: ${ok} of ${all.length} uploaded.`);
  }
}

function addFiles(files) {
  if (!uploader) return;
  for (const file of files) new Item(file);
}

// The ticker keeps speed and state current between progress events (a
// stalled or paused upload sends none).
setInterval(() => {
  for (const item of items) item.draw();
}, 500);

window.addEventListener("beforeunload", (e) => {
  if ([...items].some((i) => !i.settled)) e.preventDefault();
});

// ---------- picker and drop area ----------

els.input.addEventListener("change", () => {
  addFiles([...els.input.files]);
  els.input.value = ""; // so picking the same file again still fires "change"
});

let dragDepth = 0;
els.drop.addEventListener("dragenter", (e) => {
  e.preventDefault();
  dragDepth++;
  els.drop.classList.add("over");
});
els.drop.addEventListener("dragover", (e) => {
  e.preventDefault();
  e.dataTransfer.dropEffect = "copy";
});
els.drop.addEventListener("dragleave", () => {
  if (--dragDepth <= 0) {
    dragDepth = 0;
    els.drop.classList.remove("over");
  }
});
els.drop.addEventListener("drop", (e) => {
  e.preventDefault();
  dragDepth = 0;
  els.drop.classList.remove("over");
  const files = [];
  const items = [...(e.dataTransfer.items ?? [])];
  for (const [k, file] of [...e.dataTransfer.files].entries()) {
    // A dropped folder arrives as a File that cannot be read: say so instead.
    const entry = items[k]?.webkitGetAsEntry?.();
    if (entry?.isDirectory) announce(`${file.name} is a folder; drop the files inside it instead.`);
    else files.push(file);
  }
  addFiles(files);
});
// A file dropped next to the area would otherwise replace the page with it.
for (const type of ["dragover", "drop"]) {
  window.addEventListener(type, (e) => {
    if (!els.drop.contains(e.target)) e.preventDefault();
  });
}

// ---------- the file list ----------

let cursor = null;

function addFileRow(file, atTop) {
  if (els.files.querySelector(`tr[data-id="${CSS.escape(file.id)}"]`)) return;
  const tr = document.createElement("tr");
  tr.dataset.id = file.id;
  const cell = (text, cls) => {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    tr.append(td);
    return td;
  };
  const nameCell = cell(file.name, "name");
  nameCell.title = file.name;
  cell(formatBytes(file.size), "num").title = `${file.size.toLocaleString()} bytes`;
  cell(file.type, "type").title = file.type;
  const when = cell("", "date");
  const time = document.createElement("time");
  time.dateTime = file.created_at;
  time.textContent = formatDate(file.created_at);
  when.append(time);

  const actions = cell("", "actions");
  const link = document.createElement("a");
  link.href = `${API}/files/${encodeURIComponent(file.id)}`;
  link.className = "download";
  link.textContent = "Download";
  link.setAttribute("aria-label", `Download ${file.name}`);
  link.addEventListener("click", (e) => {
    e.preventDefault();
    download(file, link);
  });
  const del = document.createElement("button");
  del.type = "button";
  del.className = "delete danger small";
  del.textContent = "Delete";
  del.setAttribute("aria-label", `Delete ${file.name}`);
  del.addEventListener("click", () => remove(file, tr, del));
  actions.append(link, del);

  if (atTop) els.files.prepend(tr);
  else els.files.append(tr);
}

/**
 * Download URLs are signed and short-lived, and the API wants the token,
 * so the link asks for a fresh URL when clicked and then follows it (the
 * store answers with Content-Disposition: attachment; the page stays).
 */
async function download(file, link) {
  link.setAttribute("aria-busy", "true");
  try {
    const meta = await api("GET", `/files/${encodeURIComponent(file.id)}`);
    const a = document.createElement("a");
    a.href = meta.download_url;
    a.download = file.name;
    a.hidden = true;
    document.body.append(a);
    a.click();
    a.remove();
  } catch (e) {
    els.filesStatus.textContent = `Could not download ${file.name}: ${describe(e)}`;
  } finally {
    link.removeAttribute("aria-busy");
  }
}

async function remove(file, tr, button) {
  if (!confirm(`Delete “${file.name}”? This cannot be undone.`)) return;
  button.disabled = true;
  try {
    await api("DELETE", `/files/${encodeURIComponent(file.id)}`);
  } catch (e) {
    // Already gone (another tab) is what was asked for.
    if (e.code !== "not_found") {
      button.disabled = false;
      els.filesStatus.textContent = `Could not delete ${file.name}: ${describe(e)}`;
      return;
    }
  }
  const next = tr.nextElementSibling ?? tr.previousElementSibling;
  tr.remove();
  announce(`${file.name} deleted.`);
  if (!els.files.children.length && els.more.hidden) showEmpty();
  // Focus moves to the neighbouring row's Delete, not to the top of the page.
  (next?.querySelector(".delete") ?? els.filesHeading).focus();
}

function showEmpty() {
  els.filesTable.hidden = true;
  els.filesStatus.textContent = "No files yet. Uploaded files appear here.";
}

let loading = null;
async function loadFiles(reset) {
  if (loading) return loading;
  loading = (async () => {
    if (reset) cursor = null;
    els.more.disabled = true;
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (cursor) query.set("cursor", cursor);
    try {
      const page = await api("GET", `/files?${query}`);
      if (reset) els.files.replaceChildren();
      for (const f of page.files) addFileRow(f, false);
      cursor = page.next_cursor;
      els.more.hidden = !cursor;
      if (els.files.children.length) {
        els.filesTable.hidden = false;
        els.filesStatus.textContent = "";
      } else showEmpty();
      if (!token()) els.tokenState.textContent = "(not needed: the server runs in development mode)";
    } catch (e) {
      if (reset) {
        els.files.replaceChildren();
        els.filesTable.hidden = true;
        els.more.hidden = true;
      }
      if (e.code === "unauthorized") {
        els.filesStatus.textContent = "Paste an access token (under “Access token” at the top) to see and upload your files.";
        els.tokenState.textContent = token() ? "(rejected: paste a new one)" : "(needed)";
        els.access.open = true;
      } else {
        els.filesStatus.textContent = `Could not load your files: ${describe(e)}`;
      }
    } finally {
      els.more.disabled = false;
      loading = null;
    }
  })();
  return loading;
}

els.more.addEventListener("click", async () => {
  const before = els.files.children.length;
  await loadFiles(false);
  // Focus the first new row, so keyboard users continue where the list grew.
  els.files.children[before]?.querySelector("a")?.focus();
});
els.refresh.addEventListener("click", () => loadFiles(true));

// ---------- token ----------

function showTokenState() {
  els.token.value = token();
  els.tokenState.textContent = token() ? "(set)" : "";
}

els.tokenForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const value = els.token.value.trim().replace(/^Bearer\s+/i, "");
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
  uploader?.setToken(value || null);
  showTokenState();
  announce(value ? "Token saved for this tab." : "Token removed.");
  loadFiles(true);
});
els.tokenClear.addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  uploader?.setToken(null);
  showTokenState();
  announce("Token removed.");
  loadFiles(true);
});

// ---------- start ----------

async function main() {
  showTokenState();
  els.input.disabled = true;
  // Imported here, not at the top: a server started before the package was
  // built answers 404 for it, and the page must say so instead of waiting.
  let pkg;
  try {
    pkg = await import("/pkg/upload_wasm.js");
  } catch {
    els.limits.textContent =
      "The upload client is not built, so nothing can be uploaded yet. Build it with `bash scripts/build-wasm.sh` and reload this page.";
    return;
  }
  const { default: init, Uploader } = pkg;
  try {
    await init();
    // checksums: every part (or the whole small file) carries its SHA-256,
    // verified by the store. resume: a file chosen again after a reload or a
    // crash continues its earlier upload (a record in localStorage).
    uploader = new Uploader({
      endpoint: API,
      token: token() || undefined,
      concurrency: 4,
      checksums: true,
      resume: true,
      onResume: (file, info) => [...items].find((item) => item.file === file && !item.settled)?.resumed(info),
    });
  } catch (e) {
    els.limits.textContent = `The upload client could not start: ${e.message ?? e}`;
    return;
  }
  loadFiles(true);
  try {
    config = await uploader.config();
    const c = config.constraints;
    els.limits.textContent = `Up to ${formatBytes(c.max_file_size)} per file · ${c.accept.length ? `accepted: ${c.accept.join(", ")}` : "any type"}`;
    // The picker offers only what the server accepts (the same syntax as HTML's accept).
    if (c.accept.length) els.input.accept = c.accept.join(",");
  } catch (e) {
    els.limits.textContent = `Could not reach the server: ${describe(e)}`;
  }
  els.input.disabled = false;
  document.body.dataset.ready = "true";
}

main();
