// The demo page: picks onnxruntime-web's WebGPU or WebAssembly build, opens the bundle
// with pocketgan.js, lists its concepts, edits a photo (file, drop, webcam) and shows
// before / after with the frame time. URL parameters: ?bundle=URL (default bundle/),
// ?ep=auto|wasm|webgpu (default auto: WebGPU when the browser has an adapter),
// ?threads=N (WebAssembly threads; default onnxruntime-web's).
//
// The Generate tab (#generate) opens a generation bundle (lib/generation.js) from
// ?generation=URL (default generation/, where `pocketgan serve-demo` serves one): a prompt
// and a seed in, the generator's S x S image out, shown enlarged with sharp pixels.
//
// Tests drive it through window.pocketganDemo (see test/drive.mjs).

import { decodeImage, imageDataOf, openBundle } from './pocketgan.js';
import { openGenerationBundle } from './lib/generation.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

const state = {
  runtime: null,
  backend: null,
  photo: null, // ImageData of the current still photo, or null while filming
  edits: 0,
  lastResult: null,
  webcam: null, // {stream, running}
  fps: [],
};

function setStatus(text, error = false) {
  const el = $('status');
  el.textContent = text;
  el.classList.toggle('error', error);
}

async function pickBackend() {
  const wanted = params.get('ep') || 'auto';
  let webgpu = false;
  if (wanted !== 'wasm' && navigator.gpu) {
    try {
      webgpu = Boolean(await navigator.gpu.requestAdapter());
    } catch {
      webgpu = false;
    }
  }
  if (wanted === 'webgpu' && !webgpu) console.warn('pocketgan: WebGPU requested but not available; using WebAssembly');
  const ort = await import(webgpu ? './ort/ort.webgpu.min.mjs' : './ort/ort.wasm.min.mjs');
  ort.env.wasm.wasmPaths = new URL('ort/', location.href).href;
  if (params.get('threads')) ort.env.wasm.numThreads = Number(params.get('threads'));
  return { ort, name: webgpu ? 'webgpu' : 'wasm', executionProviders: webgpu ? ['webgpu', 'wasm'] : ['wasm'] };
}

function draw(canvas, image) {
  canvas.width = image.width;
  canvas.height = image.height;
  const data = image.data instanceof Uint8ClampedArray ? image.data : new Uint8ClampedArray(image.data);
  canvas.getContext('2d').putImageData(new ImageData(data, image.width, image.height), 0, 0);
}

function showTimings(result) {
  const t = result.timings;
  let text = `${state.runtime.concept} · frame ${t.total.toFixed(1)} ms (pre ${t.preprocess.toFixed(1)}, ` +
    `model ${t.model.toFixed(1)}, post ${t.postprocess.toFixed(1)}) · ${state.backend}`;
  if (state.webcam && state.fps.length > 1) {
    const span = (state.fps[state.fps.length - 1] - state.fps[0]) / 1000;
    text += ` · ${((state.fps.length - 1) / span).toFixed(1)} fps`;
  }
  $('timing').textContent = text;
}

async function editAndShow(image) {
  const result = await state.runtime.edit(image);
  draw($('after'), result.image);
  $('after-caption').textContent = `after: ${result.concept} (${result.image.width}×${result.image.height})`;
  state.edits += 1;
  state.lastResult = result;
  showTimings(result);
  return result;
}

async function showPhoto(image, label) {
  stopWebcam();
  state.photo = image;
  draw($('before'), image);
  $('before-caption').textContent = `before: ${label} (${image.width}×${image.height})`;
  return editAndShow(image);
}

async function openFile(file) {
  try {
    await showPhoto(await decodeImage(file), file.name || 'photo');
  } catch (e) {
    setStatus(`could not edit ${file.name}: ${e.message}`, true);
    throw e;
  }
}

function strength() {
  return Number($('strength').value);
}

async function setStrength(value) {
  $('strength').value = String(value);
  $('strength-value').textContent = String(value);
  state.runtime.setConcept(state.runtime.concept, { strength: strength() });
  if (state.photo && !state.webcam) return editAndShow(state.photo);
  return null;
}

async function selectConcept(name) {
  state.runtime.setConcept(name, state.runtime.canMix ? { strength: strength() } : {});
  for (const b of document.querySelectorAll('.concept')) b.setAttribute('aria-pressed', String(b.dataset.concept === name));
  if (state.photo && !state.webcam) return editAndShow(state.photo);
  return null;
}

function renderConcepts(runtime) {
  const nav = $('concepts');
  nav.replaceChildren();
  for (const name of runtime.concepts) {
    const info = runtime.conceptInfo(name);
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'concept';
    button.dataset.concept = name;
    button.title = info.description || name;
    button.setAttribute('aria-pressed', String(name === runtime.concept));
    button.append(name);
    button.addEventListener('click', () => selectConcept(name).catch((e) => setStatus(e.message, true)));
    nav.append(button);
  }
}

// --- webcam ----------------------------------------------------------------------------

function stopWebcam() {
  if (!state.webcam) return;
  state.webcam.running = false;
  for (const track of state.webcam.stream.getTracks()) track.stop();
  state.webcam = null;
  $('webcam').textContent = 'Start webcam';
}

async function startWebcam() {
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
  const video = $('video');
  video.srcObject = stream;
  await video.play();
  state.photo = null;
  state.fps = [];
  state.webcam = { stream, running: true };
  $('webcam').textContent = 'Stop webcam';
  const cam = state.webcam;
  const loop = async () => {
    if (!cam.running) return;
    if (video.videoWidth && video.readyState >= 2) {
      const frame = imageDataOf(video, video.videoWidth, video.videoHeight);
      draw($('before'), frame);
      $('before-caption').textContent = `before: webcam (${frame.width}×${frame.height})`;
      state.fps.push(performance.now());
      if (state.fps.length > 30) state.fps.shift();
      try {
        await editAndShow(frame);
      } catch (e) {
        stopWebcam();
        setStatus(`webcam: ${e.message}`, true);
        return;
      }
    }
    if (cam.running) requestAnimationFrame(loop);
  };
  requestAnimationFrame(loop);
}

// --- golden vectors --------------------------------------------------------------------

async function checkGolden() {
  const results = await state.runtime.checkGolden();
  const rows = results.map((r) => `<tr><td>${r.concept}</td><td>${Number.isFinite(r.psnr) ? r.psnr.toFixed(2) : '∞'} dB</td>` +
    `<td class="${r.passed ? 'pass' : 'fail'}">${r.passed ? 'pass' : 'FAIL'} (≥ ${r.thresholdDb} dB)</td><td>${r.ms.toFixed(1)} ms</td></tr>`);
  $('golden').innerHTML = `<h2>Golden vectors</h2><table><tr><th>concept</th><th>PSNR vs expected</th><th></th><th>time</th></tr>${rows.join('')}</table>`;
  return results;
}

// --- start -----------------------------------------------------------------------------

function wireInputs() {
  $('file').addEventListener('change', (e) => {
    const file = e.target.files[0];
    e.target.value = ''; // so picking the same file again edits it again
    if (file) openFile(file).catch(() => {});
  });
  const panel = $('before-panel');
  panel.addEventListener('dragover', (e) => {
    e.preventDefault();
    panel.classList.add('drop');
  });
  panel.addEventListener('dragleave', () => panel.classList.remove('drop'));
  panel.addEventListener('drop', (e) => {
    e.preventDefault();
    panel.classList.remove('drop');
    const file = [...e.dataTransfer.files].find((f) => f.type.startsWith('image/'));
    if (file) openFile(file).catch(() => {});
  });
  const webcam = $('webcam');
  webcam.disabled = !(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
  webcam.addEventListener('click', () => {
    if (state.webcam) stopWebcam();
    else startWebcam().catch((e) => setStatus(`webcam: ${e.message}`, true));
  });
  if (state.runtime.canMix) {
    $('strength-control').hidden = false;
    $('strength').addEventListener('input', (e) => setStrength(Number(e.target.value)).catch((err) => setStatus(err.message, true)));
  }
  const golden = state.runtime.goldenConcepts;
  if (golden.length) {
    const sample = $('sample');
    sample.hidden = false;
    sample.addEventListener('click', async () => {
      const rel = state.runtime.conceptInfo(golden[0]).golden.input;
      await showPhoto(await decodeImage(await state.runtime.readArtifact(rel), { exifOrientation: false }), 'sample');
    });
    const check = $('check-golden');
    check.hidden = false;
    check.addEventListener('click', () => checkGolden().catch((e) => setStatus(e.message, true)));
  }
}

// one onnxruntime-web module for both tabs
const backendReady = pickBackend();

async function start() {
  const backend = await backendReady;
  state.backend = backend.name;
  const url = params.get('bundle') || 'bundle/';
  const t0 = performance.now();
  const runtime = await openBundle(url, { ort: backend.ort, executionProviders: backend.executionProviders });
  state.runtime = runtime;
  renderConcepts(runtime);
  wireInputs();
  const s = runtime.size;
  setStatus(`ready: ${runtime.concepts.length} concepts · model ${s}×${s} · ${backend.name} · opened in ${(performance.now() - t0).toFixed(0)} ms`);
  return runtime;
}

const ready = start();
ready.catch((e) => {
  console.error(e);
  setStatus(`${e.name || 'Error'}: ${e.message}`, true);
});

// --- the Generate tab ------------------------------------------------------------------

const gen = {
  runtime: null,
  generations: 0,
  lastResult: null,
  golden: null, // the last golden check's results
  backend: null,
  readyText: '',
};

function setGenStatus(text, error = false) {
  const el = $('gen-status');
  el.textContent = text;
  el.classList.toggle('error', error);
}

function showTab(name) {
  const tab = name === 'generate' ? 'generate' : 'edit';
  for (const t of ['edit', 'generate']) {
    $(`${t}-tab`).hidden = t !== tab;
    $(`tab-${t}`).setAttribute('aria-selected', String(t === tab));
  }
}

/** Generate from the prompt and seed fields (or the given ones) and draw the image. */
async function generate(prompt = $('gen-prompt').value, seed = $('gen-seed').value) {
  const result = await gen.runtime.generate(prompt, seed);
  const s = gen.runtime.size;
  const canvas = $('gen-canvas');
  draw(canvas, result.image); // the canvas holds the generator's own S x S pixels
  // CSS enlarges it by a whole factor, nearest-neighbour (style.css): about 256 px on screen
  const zoom = Math.max(1, Math.round(256 / s));
  canvas.style.width = `${s * zoom}px`;
  gen.generations += 1;
  gen.lastResult = result;
  $('gen-caption').textContent = `${JSON.stringify(prompt)} · seed ${result.seed} (${s}×${s}, shown ×${zoom})`;
  const t = result.timings;
  $('gen-timing').textContent = `one pass: model ${t.model.toFixed(1)} ms · total ${t.total.toFixed(1)} ms ` +
    `(prompt ${t.prompt.toFixed(1)}, noise ${t.noise.toFixed(1)}, pixels ${t.postprocess.toFixed(1)}) · ${gen.backend}`;
  setGenStatus(gen.readyText);
  return result;
}

async function checkGenerationGolden() {
  const results = await gen.runtime.checkGolden();
  gen.golden = results;
  const cell = (text, cls = '') => `<td${cls ? ` class="${cls}"` : ''}>${text}</td>`;
  const escape = (text) => text.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  const rows = results.map((r) => '<tr>' +
    cell(r.prompt ? escape(JSON.stringify(r.prompt)) : '"" (unconditional)') + cell(r.seed) +
    cell(`${r.noiseBitEqual}/${r.noiseValues} bit-equal${r.noiseMaxDiff ? `, max diff ${r.noiseMaxDiff.toExponential(1)}` : ''}`,
      r.noiseMaxDiff < 1e-6 ? 'pass' : 'fail') +
    cell(r.statesEqual ? 'equal' : 'DIFFER', r.statesEqual ? 'pass' : 'fail') +
    cell(`${Number.isFinite(r.psnr) ? r.psnr.toFixed(2) : '∞'} dB`) +
    cell(`${r.passed ? 'pass' : 'FAIL'} (≥ ${r.thresholdDb} dB)`, r.passed ? 'pass' : 'fail') + cell(`${r.ms.toFixed(1)} ms`) + '</tr>');
  $('gen-golden').innerHTML = '<h2>Golden cases</h2><table><tr><th>prompt</th><th>seed</th><th>noise vs stored</th>' +
    `<th>prompt states</th><th>image vs PyTorch</th><th></th><th>time</th></tr>${rows.join('')}</table>`;
  return results;
}

function randomSeed() {
  const [seed] = crypto.getRandomValues(new BigUint64Array(1));
  $('gen-seed').value = String(seed);
  return seed;
}

async function startGeneration() {
  const backend = await backendReady;
  const url = params.get('generation') || 'generation/';
  const t0 = performance.now();
  const runtime = await openGenerationBundle(url, { ort: backend.ort, executionProviders: backend.executionProviders });
  gen.runtime = runtime;
  gen.backend = backend.name;
  const first = runtime.manifest.golden[0];
  if (first) { // a first prompt and seed the bundle was checked on
    $('gen-prompt').value = first.prompt;
    $('gen-seed').value = String(first.seed);
  }
  const fail = (e) => setGenStatus(`${e.name || 'Error'}: ${e.message}`, true);
  $('gen-form').addEventListener('submit', (e) => {
    e.preventDefault();
    generate().catch(fail);
  });
  $('gen-random-seed').addEventListener('click', () => {
    randomSeed();
    generate().catch(fail);
  });
  $('gen-run').disabled = false;
  $('gen-random-seed').disabled = false;
  if (runtime.manifest.golden.length) {
    $('gen-check-golden').hidden = false;
    $('gen-check-golden').addEventListener('click', () => checkGenerationGolden().catch(fail));
  }
  const s = runtime.size;
  const p = runtime.manifest.prompts;
  gen.readyText = `ready: ${s}×${s} generator · prompts of up to ${p.tokens} words (${p.buckets} buckets) · ` +
    `${backend.name} · opened in ${(performance.now() - t0).toFixed(0)} ms`;
  setGenStatus(gen.readyText);
  return runtime;
}

// The generation bundle is opened the first time the Generate tab shows, so a page used for
// editing only neither downloads it nor asks a server that has none (a 404 in the console).
let generationReady = null;
function loadGeneration() {
  if (!generationReady) {
    generationReady = startGeneration();
    generationReady.catch((e) => {
      const hint = e.name === 'NoGenerationBundleError'
        ? '\nServe one: pocketgan serve-demo GENERATION_BUNDLE (or open this page with ?generation=URL).' : '';
      setGenStatus(`${e.name || 'Error'}: ${e.message}${hint}`, true);
    });
  }
  return generationReady;
}

function onHash() {
  showTab(location.hash.slice(1));
  if (location.hash === '#generate') loadGeneration();
}
onHash();
window.addEventListener('hashchange', onHash);

window.pocketganDemo = {
  ready,
  state,
  get runtime() { return state.runtime; },
  selectConcept,
  setStrength,
  showPhoto,
  checkGolden,
  startWebcam,
  stopWebcam,
  generation: {
    get ready() { return loadGeneration(); },
    state: gen,
    get runtime() { return gen.runtime; },
    generate,
    checkGolden: checkGenerationGolden,
    showTab,
  },
};
