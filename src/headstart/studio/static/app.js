// headstart studio: plain JavaScript, no build step, nothing loaded from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE = 60;
const state = { classes: [], selected: null, offset: 0, stream: null, tryStream: null, live: null, history: [], options: null };

function say(text, error = false) {
  $("message").textContent = text;
  $("message").className = error ? "error" : "";
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) throw new Error(body?.error || `${response.status} ${response.statusText}`);
  return body;
}

const json = (method, body) => ({ method, headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
const enc = encodeURIComponent;
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

// ---- tabs
function showTab(name) {
  for (const tab of document.querySelectorAll("[role=tab]")) {
    const on = tab.getAttribute("aria-controls") === name;
    tab.setAttribute("aria-selected", on);
    $(tab.getAttribute("aria-controls")).hidden = !on;
  }
  if (name === "look") loadLook().catch((e) => say(e.message, true));
  if (name !== "try") stopLive();
  location.hash = name;
}
for (const tab of document.querySelectorAll("[role=tab]")) {
  tab.addEventListener("click", () => showTab(tab.getAttribute("aria-controls")));
}

// ---- classes
async function refresh() {
  const project = await api("/api/project");
  $("project-path").textContent = project.path;
  state.classes = project.classes;
  const list = $("classes");
  list.replaceChildren();
  for (const c of project.classes) {
    list.append(
      el("li", { class: c.name === state.selected ? "selected" : "" },
        el("button", { class: "pick", type: "button", onclick: () => select(c.name) }, c.name),
        el("span", { class: "count", "aria-label": `${c.count} images` }, String(c.count)),
        el("button", { class: "quiet", type: "button", "aria-label": `rename ${c.name}`, onclick: () => renameClass(c.name) }, "Rename"),
        el("button", { class: "danger", type: "button", "aria-label": `delete ${c.name}`, onclick: () => deleteClass(c.name) }, "Delete"),
      ),
    );
  }
  if (state.selected && !project.classes.some((c) => c.name === state.selected)) select(null);
  $("train-start").disabled = project.training;
  $("train-cancel").disabled = !project.training;
  return project;
}

function select(name) {
  state.selected = name;
  state.offset = 0;
  $("selected-title").textContent = name ? `Class “${name}”` : "Pick or add a class";
  $("class-tools").hidden = !name;
  refresh();
  if (name) loadThumbs();
}

$("add-class").addEventListener("submit", async (e) => {
  e.preventDefault();
  const name = $("new-class").value.trim();
  try {
    await api("/api/classes", json("POST", { name }));
    $("new-class").value = "";
    select(name);
    say(`Class “${name}” added`);
  } catch (err) { say(err.message, true); }
});

async function renameClass(name) {
  const to = prompt(`Rename “${name}” to:`, name);
  if (!to || to === name) return;
  try {
    await api(`/api/classes/${enc(name)}`, json("PATCH", { name: to }));
    if (state.selected === name) state.selected = to;
    await refresh();
    if (state.selected === to) select(to);
  } catch (err) { say(err.message, true); }
}

async function deleteClass(name) {
  if (!confirm(`Delete the class “${name}” and all its images from disk?`)) return;
  try {
    await api(`/api/classes/${enc(name)}`, { method: "DELETE" });
    say(`Class “${name}” deleted`);
    await refresh();
  } catch (err) { say(err.message, true); }
}

// ---- thumbnails, paged so that 10,000 images cost one page
function thumb(cls, file, extra = []) {
  return el("div", { class: "thumb" },
    el("a", { href: `/api/images/${enc(cls)}/${enc(file)}`, target: "_blank", title: "open the full image" },
      el("img", { src: `/api/images/${enc(cls)}/${enc(file)}?thumb=1`, alt: `${cls}: ${file}`, loading: "lazy" })),
    el("div", { class: "name", title: file }, file), ...extra);
}

function sampleTools(cls, file, after) {
  const move = el("select", { "aria-label": `move ${file} to another class`, onchange: async (e) => {
    if (!e.target.value) return;
    try {
      await api(`/api/images/${enc(cls)}/${enc(file)}/move`, json("POST", { to: e.target.value }));
      say(`Moved ${file} to “${e.target.value}”`);
      after();
    } catch (err) { say(err.message, true); }
  } }, el("option", { value: "" }, "Move to…"), ...state.classes.filter((c) => c.name !== cls).map((c) => el("option", { value: c.name }, c.name)));
  const remove = el("button", { class: "danger", type: "button", "aria-label": `delete ${file}`, onclick: async () => {
    try {
      await api(`/api/images/${enc(cls)}/${enc(file)}`, { method: "DELETE" });
      after();
    } catch (err) { say(err.message, true); }
  } }, "Delete");
  return [move, remove];
}

async function loadThumbs() {
  const cls = state.selected;
  if (!cls) return;
  const page = await api(`/api/classes/${enc(cls)}/images?offset=${state.offset}&limit=${PAGE}`);
  const grid = $("thumbs");
  grid.replaceChildren(...page.images.map((f) => thumb(cls, f, sampleTools(cls, f, () => { refresh(); loadThumbs(); }))));
  const last = Math.min(state.offset + PAGE, page.total);
  $("page-info").textContent = page.total ? `${state.offset + 1}–${last} of ${page.total}` : "no images yet";
  $("prev").disabled = state.offset === 0;
  $("next").disabled = last >= page.total;
}
$("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); loadThumbs(); });
$("next").addEventListener("click", () => { state.offset += PAGE; loadThumbs(); });

// ---- adding images: webcam frames and files
async function upload(cls, files) {
  const form = new FormData();
  for (const [blob, name] of files) form.append("files", blob, name);
  const result = await api(`/api/classes/${enc(cls)}/images`, { method: "POST", body: form });
  if (result.refused.length) {
    $("refused").append(...result.refused.map((r) => el("li", {}, `${r.name}: ${r.error}`)));
  }
  return result;
}

async function startCamera(video, deviceId) {
  const constraints = { video: deviceId ? { deviceId: { exact: deviceId } } : true, audio: false };
  const stream = await navigator.mediaDevices.getUserMedia(constraints);
  video.srcObject = stream;
  await video.play().catch(() => {});
  return stream;
}

async function listCameras() {
  const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "videoinput");
  $("camera").replaceChildren(...devices.map((d, i) => el("option", { value: d.deviceId }, d.label || `camera ${i + 1}`)));
}

$("camera-on").addEventListener("click", async () => {
  try {
    if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
    state.stream = await startCamera($("video"), $("camera").value);
    await listCameras();
    say("Camera on");
  } catch (err) { say(`Camera: ${err.message}`, true); }
});
$("camera").addEventListener("change", () => $("camera-on").click());

function grabFrame(video) {
  const canvas = $("grab");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
}

let recording = null;
let recorded = 0;
let session = 0;  // one hold of the record button: its frames are named alike, so training keeps them in one split
async function captureOne() {
  if (!state.stream || !state.selected) { say("Start the camera and pick a class first", true); stopRecording(); return; }
  const blob = await grabFrame($("video"));
  const n = ++recorded;
  await upload(state.selected, [[blob, `webcam-${session}-${n}.jpg`]]);
  say(`${n} frame${n === 1 ? "" : "s"} saved to “${state.selected}”`);
}
function startRecording() {
  if (recording) return;
  recorded = 0;
  session = Date.now();
  $("record").classList.add("recording");
  captureOne();
  recording = setInterval(captureOne, 200);
}
function stopRecording() {
  if (!recording) return;
  clearInterval(recording);
  recording = null;
  $("record").classList.remove("recording");
  setTimeout(() => { refresh(); loadThumbs(); }, 300);
}
const record = $("record");
record.addEventListener("pointerdown", startRecording);
for (const ev of ["pointerup", "pointerleave", "blur"]) record.addEventListener(ev, stopRecording);
record.addEventListener("keydown", (e) => { if (e.key === " " || e.key === "Enter") { e.preventDefault(); startRecording(); } });
record.addEventListener("keyup", (e) => { if (e.key === " " || e.key === "Enter") stopRecording(); });
$("snapshot").addEventListener("click", async () => { recorded = 0; session = Date.now(); await captureOne(); refresh(); loadThumbs(); });

async function uploadFiles(files) {
  if (!state.selected) { say("Pick a class first", true); return; }
  $("refused").replaceChildren();
  const list = [...files].map((f) => [f, f.name]);
  let saved = 0;
  for (let i = 0; i < list.length; i += 16) saved += (await upload(state.selected, list.slice(i, i + 16))).saved.length;
  say(`${saved} image${saved === 1 ? "" : "s"} added to “${state.selected}”`);
  refresh();
  loadThumbs();
}
$("files").addEventListener("change", (e) => uploadFiles(e.target.files));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("keydown", (e) => { if (e.key === "Enter") $("files").click(); });
drop.addEventListener("drop", async (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  const files = [];
  const walk = async (entry) => {  // folders dropped whole
    if (entry.isFile) files.push(await new Promise((res) => entry.file(res)));
    else if (entry.isDirectory) {
      const reader = entry.createReader();
      let batch;
      while ((batch = await new Promise((res) => reader.readEntries(res))).length) for (const child of batch) await walk(child);
    }
  };
  const entries = [...e.dataTransfer.items].map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
  if (entries.length) for (const entry of entries) await walk(entry);
  else files.push(...e.dataTransfer.files);
  uploadFiles(files);
});

// ---- training, followed live through server-sent events
let events = null;
function follow() {
  if (events) events.close();
  state.history = [];
  events = new EventSource("/api/train/events");
  events.onmessage = (m) => {
    const e = JSON.parse(m.data);
    if (e.type === "event") onProgress(e);
    else if (e.type === "done") onDone(e);
    else if (e.type === "failed") { say(e.error, true); $("progress").textContent = `Failed: ${e.error}`; }
    if (e.type !== "event") { events.close(); events = null; refresh(); }
  };
}

function onProgress(e) {
  const rate = e.unit === "images" && e.elapsed > 0 && e.step ? ` · ${(e.step / e.elapsed).toFixed(1)} images/s` : "";
  const total = e.total ? ` of ${e.total}` : "";
  $("progress").textContent = `${e.description}: ${e.step}${total} ${e.unit}${rate}`;
  $("progress-bar").value = e.total ? e.step / e.total : 0;
  if ((e.stage === "train_head" || e.stage === "fine_tune") && e.metrics?.epoch) {
    const last = state.history[state.history.length - 1];
    const point = { stage: e.stage, epoch: e.metrics.epoch, loss: e.metrics.val_loss, accuracy: e.metrics.val_accuracy };
    if (!last || last.stage !== point.stage || last.epoch !== point.epoch) state.history.push(point);
    drawCurves();
  }
}

function drawCurves() {
  const canvas = $("curves");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 34;
  ctx.clearRect(0, 0, w, h);
  const pts = state.history;
  ctx.font = "12px system-ui";
  ctx.fillStyle = "#5f6368";
  ctx.fillText("validation loss (blue) and accuracy (green) per epoch", pad, 16);
  if (pts.length < 1) return;
  const maxLoss = Math.max(...pts.map((p) => p.loss), 1e-6);
  const x = (i) => pad + (i * (w - 2 * pad)) / Math.max(pts.length - 1, 1);
  const line = (key, scale, colour) => {
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    ctx.beginPath();
    pts.forEach((p, i) => { const y = h - pad - (p[key] / scale) * (h - 2 * pad); i ? ctx.lineTo(x(i), y) : ctx.moveTo(x(i), y); });
    ctx.stroke();
  };
  line("loss", maxLoss, "#2457d6");
  line("accuracy", 1, "#1e8e3e");
  ctx.fillStyle = "#5f6368";
  ctx.fillText(`epoch ${pts.length} · val loss ${pts.at(-1).loss.toFixed(3)} · val accuracy ${(pts.at(-1).accuracy * 100).toFixed(1)}%`, pad, h - 8);
}

const percent = (x) => `${(x * 100).toFixed(1)}%`;
function onDone(e, restored = false) {
  const box = $("train-result");
  const [low, high] = e.interval;
  const which = restored ? `Last model (${e.model}, ${e.backbone})` : "Done";
  if (e.split === "train") {  // every class's images were one or two recordings: none could be spared for testing
    box.replaceChildren(el("p", { id: "headline", class: "warn" }, `${which}: no image could be held out for testing, because each class needs three recordings or more `,
      `(they are kept whole). ${percent(e.accuracy)} is on the training images themselves and says little. `,
      el("button", { type: "button", onclick: () => showTab("data") }, "Record more")));
    return;
  }
  box.replaceChildren(el("p", { id: "headline" }, `${which}: accuracy ${percent(e.accuracy)}, ${e.correct} of ${e.total} held-out ${e.split} images right `,
    `(95% interval ${percent(low)}–${percent(high)}). Each recording was kept whole in one split, so these are captures the model never saw. `,
    el("button", { type: "button", onclick: () => showTab("look") }, "Look at the mistakes")));
  if (e.total < 30) box.append(el("p", { class: "note" }, `${e.total} held-out images make a wide interval: record more short clips of each class for a surer number.`));
  if (e.leakage) box.append(el("p", { class: "warn" }, `⚠ ${e.leakage} `, el("button", { type: "button", onclick: () => showTab("data") }, "Record more")));
  const skipped = Object.entries(e.skipped || {});
  if (skipped.length) box.append(el("h3", {}, "Skipped files"), el("ul", {}, ...skipped.map(([p, r]) => el("li", {}, `${p}: ${r}`))));
  if (restored) {
    state.history = e.history.val_loss.map((loss, i) => ({ stage: "train_head", epoch: i + 1, loss, accuracy: e.history.val_accuracy[i] }));
    drawCurves();
  } else say("Training finished");
}

// ---- the training form, from the settings the server declares (HParams' fields, limits and choices)
function fieldSchema(name) {
  const field = state.options.settings.properties[name];
  return field.anyOf ? { ...field, ...field.anyOf.find((option) => option.type === "integer") } : field;
}

function buildTrainForm(options) {
  for (const input of document.querySelectorAll("#train-form input[type=number]")) {
    const field = fieldSchema(input.name);
    if (field.minimum !== undefined) input.min = field.minimum;
    if (field.maximum !== undefined) input.max = field.maximum;
    input.value = field.default;
    input.title = field.description;
  }
  const augment = fieldSchema("augment");
  $("augment").replaceChildren(...augment.enum.map((v) => el("option", { value: v, selected: v === augment.default ? "" : null }, v)));
  const backbones = options.backbones.map((b) => el("option", { value: b.name, disabled: b.installed ? null : "", selected: b.name === options.default_backbone ? "" : null },
    `${b.description}${b.name === options.default_backbone ? " (default)" : ""}${b.installed ? "" : ": weights not installed"}`));
  $("backbone").replaceChildren(...backbones, el("option", { value: "auto" }, "Pick for me: compare them all on this data"));
  const blocks = () => {  // fine-tuning counts the chosen backbone's blocks
    const chosen = options.backbones.find((b) => b.name === $("backbone").value);
    $("fine_tune").max = chosen ? chosen.num_blocks : Math.min(...options.backbones.map((b) => b.num_blocks));
  };
  $("backbone").addEventListener("change", blocks);
  blocks();
}

$("train-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  const numeric = (k) => ["integer", "number"].includes(fieldSchema(k).type);
  const settings = Object.fromEntries([...form.entries()].map(([k, v]) => [k, numeric(k) ? Number(v) : v]));
  try {
    $("train-result").replaceChildren();
    await api("/api/train", json("POST", settings));
    $("train-start").disabled = true;
    $("train-cancel").disabled = false;
    say("Training…");
    follow();
  } catch (err) { say(err.message, true); }
});
$("train-cancel").addEventListener("click", () => api("/api/train/cancel", { method: "POST" }).catch((err) => say(err.message, true)));

// ---- look: metrics, confusion matrix whose cells open their images, mistakes to fix
async function loadLook() {
  $("look-summary").textContent = "Evaluating…";
  const m = await api("/api/model");
  $("look-summary").textContent = `Model ${m.name}: accuracy ${(m.accuracy * 100).toFixed(1)}% on ${m.images.length} held-out ${m.split} images · expected calibration error ${m.calibration_error.toFixed(3)}`;
  const head = el("tr", {}, ...["class", "precision", "recall", "F1", "support"].map((h) => el("th", { scope: "col" }, h)));
  const rows = m.per_class.map((r) => el("tr", {}, el("th", { scope: "row" }, r.class), ...["precision", "recall", "f1"].map((k) => el("td", {}, typeof r[k] === "number" ? r[k].toFixed(3) : r[k])), el("td", {}, String(r.support))));
  $("per-class").replaceChildren(el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)));
  const cm = el("table", { id: "confusion-table" }, el("thead", {}, el("tr", {}, el("th", {}, "true ↓ · predicted →"), ...m.classes.map((c) => el("th", { scope: "col" }, c)))));
  const body = el("tbody");
  m.confusion.forEach((row, i) => body.append(el("tr", {}, el("th", { scope: "row" }, m.classes[i]), ...row.map((n, j) => el("td", { class: `cell ${i === j ? "diag" : n ? "off" : ""}` },
    el("button", { type: "button", "aria-label": `${n} images of ${m.classes[i]} predicted as ${m.classes[j]}`, onclick: () => showCell(m, m.classes[i], m.classes[j]) }, String(n)))))));
  cm.append(body);
  $("confusion").replaceChildren(cm);
  const stamp = encodeURIComponent(m.name);  // a new model, new figures
  $("plot-calibration").src = `/api/plots/calibration.png?m=${stamp}`;
  $("plot-embedding").src = `/api/plots/embedding.png?m=${stamp}`;
  loadDoubtful().catch((e) => say(e.message, true));
}

async function loadDoubtful() {
  $("mistakes-summary").textContent = "Checking every image…";
  $("mistakes").replaceChildren();
  const d = await api("/api/doubtful");
  $("mistakes-summary").textContent = d.checked
    ? `${d.images.length} of ${d.checked} images predicted as another class by a model trained without them (${d.folds}-fold cross-validation, near-duplicates kept together): wrong labels show up here first.`
    : "Too few images per class to check them by cross-validation.";
  $("mistakes").replaceChildren(...d.images.map((x) => thumb(x.class, x.file, [
    el("div", {}, `labelled ${x.class}, looks like ${x.predicted} (${(x.confidence * 100).toFixed(0)}%)`),
    ...sampleTools(x.class, x.file, () => loadDoubtful()),
  ])));
}

function showCell(m, truth, predicted) {
  const items = m.images.filter((x) => x.true === truth && x.predicted === predicted);
  $("cell-images").replaceChildren(el("h4", {}, `true ${truth}, predicted ${predicted}: ${items.length}`),
    ...items.map((x) => thumb(x.class, x.file, [el("div", {}, `${(x.confidence * 100).toFixed(0)}%`)])));
}

// ---- try: live webcam prediction with per-class bars, or a file
function showPrediction(p) {
  $("try-label").textContent = p.label;
  $("bars").replaceChildren(...Object.entries(p.probabilities).sort((a, b) => b[1] - a[1]).map(([label, prob]) =>
    el("div", { class: "bar", role: "meter", "aria-label": label, "aria-valuenow": prob.toFixed(3), "aria-valuemin": "0", "aria-valuemax": "1" },
      el("span", { class: "label" }, label),
      el("span", { class: "track" }, el("span", { class: "fill", style: `display:block;width:${(prob * 100).toFixed(1)}%` })),
      el("span", { class: "value" }, `${(prob * 100).toFixed(1)}%`))));
}

async function predictBlob(blob, name) {
  const form = new FormData();
  form.append("file", blob, name);
  showPrediction(await api("/api/predict", { method: "POST", body: form }));
}

async function liveLoop() {
  while (state.live) {
    const started = performance.now();
    try { await predictBlob(await grabFrame($("try-video")), "frame.jpg"); } catch (err) { say(err.message, true); stopLive(); }
    await new Promise((r) => setTimeout(r, Math.max(0, 250 - (performance.now() - started))));
  }
}
function stopLive() {
  state.live = null;
  if (state.tryStream) state.tryStream.getTracks().forEach((t) => t.stop());
  state.tryStream = null;
  $("live").setAttribute("aria-pressed", "false");
  $("live").textContent = "Start live prediction";
}
$("live").addEventListener("click", async () => {
  if (state.live) { stopLive(); return; }
  try {
    state.tryStream = await startCamera($("try-video"), $("camera").value);
    state.live = true;
    $("live").setAttribute("aria-pressed", "true");
    $("live").textContent = "Stop";
    liveLoop();
  } catch (err) { say(`Camera: ${err.message}`, true); }
});
$("try-file").addEventListener("change", (e) => { if (e.target.files[0]) predictBlob(e.target.files[0], e.target.files[0].name).catch((err) => say(err.message, true)); });

// ---- export: one button per registered format that is installed here
function buildExports(options) {
  const buttons = options.export_formats.filter((f) => f.available).map((f) =>
    el("button", { type: "button", class: "export", "data-format": f.name, title: `runs in ${f.runtime}` }, `Export ${f.title}`));
  $("export-buttons").replaceChildren(...buttons);
  for (const button of buttons) button.addEventListener("click", () => exportAs(button));
}

async function exportAs(button) {
  say(`Exporting ${button.dataset.format}…`);
  button.disabled = true;
  try {
    const r = await api(`/api/export/${button.dataset.format}`, { method: "POST" });
    const v = r.verification;
    // A whole-image file is also checked in each runtime on that runtime's own decoding.
    const runtimes = Object.entries(v.runtimes || {}).map(([name, x]) => x.error
      ? `${name}: can't run it`
      : `${name} ${(x.top1_agreement * 100).toFixed(1)}%`);
    $("exports").append(el("li", {}, el("a", { href: `/api/download/${enc(r.file)}`, download: r.file }, `Download ${r.file}`),
      ` · top-1 agreement with the trained model ${(v.top1_agreement * 100).toFixed(1)}% on ${v.images} images, max |Δp| ${v.max_abs_diff.toExponential(1)}`,
      runtimes.length ? ` · on whole images: ${runtimes.join(", ")}` : ""));
    say(`Exported ${r.file}`);
  } catch (err) { say(err.message, true); }
  button.disabled = false;
}

// ---- start
(async () => {
  try {
    state.options = await api("/api/options");
    buildTrainForm(state.options);
    buildExports(state.options);
    const project = await refresh();
    if (navigator.mediaDevices?.enumerateDevices) listCameras().catch(() => {});
    if (project.training) follow();
    else if (project.models.length) onDone(await api("/api/train/last"), true);  // the last run's result survives a reload
    const tab = location.hash.slice(1);
    showTab(["data", "train", "look", "try", "export"].includes(tab) ? tab : "data");
  } catch (err) { say(err.message, true); }
})();
