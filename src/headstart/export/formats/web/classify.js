// The web export's page: model.onnx takes one decoded RGB image of any size, (1, H, W, 3) uint8,
// and crops and normalises it itself (headstart's preprocessing is in the graph), so this page only
// decodes (the browser's own decoder, EXIF orientation applied, no colour-profile conversion),
// drops the alpha channel and runs the model.
"use strict";

ort.env.wasm.wasmPaths = new URL("./", location.href).href;
// Threads need a cross-origin-isolated page (COOP/COEP headers); a plain static server gives one thread.
ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;

const $ = (id) => document.getElementById(id);
const model = { session: null, meta: null };
const camera = { stream: null, running: false };

function rgbOf(image) {
  const rgba = image.data, rgb = new Uint8Array((rgba.length / 4) * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i];
    rgb[j + 1] = rgba[i + 1];
    rgb[j + 2] = rgba[i + 2];
  }
  return rgb;
}

async function classifyPixels(image) {
  const input = new ort.Tensor("uint8", rgbOf(image), [1, image.height, image.width, 3]);
  const outputs = await model.session.run({ [model.meta.input.name]: input });
  const probabilities = Array.from(outputs[model.meta.output.name].data);
  const best = probabilities.indexOf(Math.max(...probabilities));
  return { label: model.meta.labels[best], probabilities };
}

function pixelsOf(source, width, height) {
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(source, 0, 0);
  return context.getImageData(0, 0, width, height);
}

async function decode(blob) {
  const bitmap = await createImageBitmap(blob, {
    imageOrientation: "from-image",
    colorSpaceConversion: "none",
    premultiplyAlpha: "none",
  });
  try {
    return pixelsOf(bitmap, bitmap.width, bitmap.height);
  } finally {
    bitmap.close();
  }
}

async function classifyBlob(blob) {
  return classifyPixels(await decode(blob));
}

function show(result) {
  $("label").textContent = `${result.label} (${(100 * Math.max(...result.probabilities)).toFixed(1)}%)`;
  const bars = $("bars");
  if (bars.children.length !== model.meta.labels.length) {  // built once: the order never moves
    bars.replaceChildren(...model.meta.labels.map((name) => {
      const row = document.createElement("li");
      row.innerHTML = '<span class="name"></span><span class="track"><span class="fill"></span></span><span class="value"></span>';
      row.querySelector(".name").textContent = name;
      return row;
    }));
  }
  const best = result.probabilities.indexOf(Math.max(...result.probabilities));
  result.probabilities.forEach((p, i) => {
    const row = bars.children[i];
    row.classList.toggle("top", i === best);
    row.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    row.querySelector(".value").textContent = `${(100 * p).toFixed(1)}%`;
  });
}

async function classifyFiles(files) {
  const body = $("results").querySelector("tbody");
  $("results").hidden = false;
  for (const file of files) {
    const row = body.insertRow();
    row.insertCell().textContent = file.name;
    try {
      const result = await classifyBlob(file);
      row.insertCell().textContent = result.label;
      const cell = row.insertCell();
      cell.className = "p";
      cell.textContent = `${(100 * Math.max(...result.probabilities)).toFixed(1)}%`;
      window.headstart.files.push({ name: file.name, ...result });
      stopCamera();
      if ($("shown").src) URL.revokeObjectURL($("shown").src);
      $("shown").src = URL.createObjectURL(file);
      $("shown").alt = `${file.name}, classified as ${result.label}`;
      $("shown").hidden = false;
      show(result);
    } catch (error) {
      row.insertCell().textContent = `can't read it: ${error.message}`;
      row.insertCell();
      window.headstart.files.push({ name: file.name, error: String(error) });
    }
  }
  $("status").textContent = `Classified ${files.length} photo${files.length === 1 ? "" : "s"}.`;
}

async function cameraLoop() {
  const video = $("video");
  while (camera.running) {
    if (video.videoWidth > 0) {
      const frame = pixelsOf(video, video.videoWidth, video.videoHeight);
      const result = await classifyPixels(frame);
      if (!camera.running) break;
      window.headstart.lastFrame = { width: frame.width, height: frame.height, rgb: rgbOf(frame), ...result };
      show(result);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function startCamera() {
  try {
    camera.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (error) {
    $("status").textContent = `The camera can't be used: ${error.message}`;
    return;
  }
  const video = $("video");
  video.srcObject = camera.stream;
  video.hidden = false;
  $("shown").hidden = true;
  await video.play();
  camera.running = true;
  $("camera").textContent = "Stop camera";
  $("status").textContent = "Classifying the camera's frames.";
  cameraLoop();
}

function stopCamera() {
  if (!camera.stream) return;
  camera.running = false;
  camera.stream.getTracks().forEach((track) => track.stop());
  camera.stream = null;
  $("video").hidden = true;
  $("camera").textContent = "Start camera";
}

async function load() {
  model.meta = await (await fetch("model.json")).json();
  model.session = await ort.InferenceSession.create("model.onnx", { executionProviders: ["wasm"] });
  $("title").textContent = `${model.meta.labels.join(", ")}: image classifier`;
  document.title = $("title").textContent;
  $("status").textContent = `Ready: ${model.meta.labels.length} classes (${model.meta.labels.join(", ")}).`;
  $("camera").disabled = false;
  $("files").disabled = false;
}

window.headstart = { files: [], lastFrame: null, classifyBlob };
window.headstart.ready = load().catch((error) => {
  $("status").textContent = `The model can't be loaded: ${error.message}`;
  throw error;
});

$("camera").addEventListener("click", () => (camera.stream ? stopCamera() : startCamera()));
$("files").addEventListener("change", (event) => classifyFiles([...event.target.files]));
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  classifyFiles([...event.dataTransfer.files].filter((file) => file.type.startsWith("image/")));
});
