// pocketgan's web runtime: open an exported bundle with onnxruntime-web, swap concepts,
// edit images. This is the module an app copies (with lib/); app.js is only the demo UI.
//
//   import * as ort from 'onnxruntime-web/wasm';           // or onnxruntime-web/webgpu
//   import { openBundle } from './pocketgan.js';
//   const rt = await openBundle('web_bundle/', { ort });  // reads manifest.json, checks every sha256
//   rt.concepts;                                          // ['pencil_sketch', ...] in manifest order
//   rt.setConcept('cartoon');                             // hot swap: a pointer change, no reload
//   const { image, timings } = await rt.edit(imageData);  // ImageData in -> ImageData-like out, same size
//
// The bundle is read exactly as docs/bundle-format.md says: every path comes from
// manifest.json, every file's size and sha256 are checked before use, the tensor names
// come from io.input / io.output and targets.onnx.concept_inputs. Concepts come from the
// separate-mode ONNX export (a base graph + one .onnx_adapter per concept): onnxruntime-web
// has no adapter API, so each adapter's tensors are read here (lib/onnx_adapter.js) and
// fed as ordinary inputs with every run; the graph's zero defaults for those inputs are
// dropped at load (lib/onnx_model.js) because onnxruntime-web only feeds required inputs.
// Pre/post-processing is bit-exact with pocketgan.runtime.imaging (lib/imaging.js).

import { fromModelOutput, psnr, toModelInput } from './lib/imaging.js';
import { parseOnnxAdapter } from './lib/onnx_adapter.js';
import { MixError, checkMix, isMixInput, mixTensors, strengthWeight, toHalf } from './lib/concept_mix.js';
import { stripInitializers } from './lib/onnx_model.js';
import { sha256Hex } from './lib/sha256.js';

export { MixError, fromModelOutput, psnr, toModelInput };

export const FORMAT_NAME = 'pocketgan-bundle';
export const FORMAT_VERSION = 2; // 2: strength and blending (manifest neutral); 1 still read
const NEUTRAL = '<neutral>'; // the neutral adapter's key: not a valid concept name

export class PocketganError extends Error {
  constructor(message) {
    super(message);
    this.name = this.constructor.name;
  }
}
export class ManifestError extends PocketganError {}
export class UnsupportedFormatError extends PocketganError {}
export class ChecksumError extends PocketganError {}
export class ArtifactMissingError extends PocketganError {}
export class TargetNotFoundError extends PocketganError {}
export class UnknownConceptError extends PocketganError {}
export class BundleError extends PocketganError {}

const now = () => (globalThis.performance ? performance.now() : Date.now());

function checkManifest(m, where) {
  if (!m || typeof m !== 'object') throw new ManifestError(`${where}: manifest must be a JSON object`);
  if (m.format !== FORMAT_NAME) throw new ManifestError(`${where} is not a pocketgan bundle manifest (format=${JSON.stringify(m.format)})`);
  if (!Number.isInteger(m.format_version)) throw new ManifestError(`${where}: format_version is missing`);
  if (m.format_version > FORMAT_VERSION) {
    throw new UnsupportedFormatError(
      `bundle format_version ${m.format_version} is newer than this web runtime supports (${FORMAT_VERSION}); upgrade it to open the bundle`);
  }
  for (const key of ['io', 'concepts', 'targets', 'artifacts']) {
    if (!m[key]) throw new ManifestError(`${where}: manifest has no ${JSON.stringify(key)}`);
  }
  if (!m.io.input || !m.io.output) throw new ManifestError(`${where}: manifest has no io.input / io.output`);
  const onnx = m.targets.onnx;
  if (!onnx) {
    throw new TargetNotFoundError(`${where} has no ONNX export; run: pocketgan export BUNDLE --for web --out DIR`);
  }
  if (!['separate', 'both'].includes(onnx.concept_mode) || !onnx.model || !onnx.adapters || !onnx.concept_inputs) {
    throw new TargetNotFoundError(
      `${where}: the ONNX export has concept mode ${JSON.stringify(onnx.concept_mode)}; the web runtime needs the ` +
      'separate mode (a base graph + adapters): export with --concepts separate (the default) or both');
  }
  if (onnx.concept_input_dtype !== undefined && !['float32', 'float16'].includes(onnx.concept_input_dtype)) {
    throw new ManifestError(`${where}: targets.onnx.concept_input_dtype ${JSON.stringify(onnx.concept_input_dtype)} is not float32 or float16`);
  }
  for (const c of m.concepts) {
    if (!(c.name in onnx.adapters)) throw new ManifestError(`${where}: concept ${JSON.stringify(c.name)} has no ONNX adapter`);
  }
  const shape = m.io.input.shape;
  if (m.io.input.dtype !== 'float32' || shape.length !== 4 || shape[0] !== 1 || shape[1] !== 3 || shape[2] !== shape[3]) {
    throw new ManifestError(`${where}: io.input must be float32 [1, 3, S, S], got ${m.io.input.dtype} ${JSON.stringify(shape)}`);
  }
}

/** Fetch and check files listed in a manifest (lib/generation.js reads generation bundles with it too). */
export class ArtifactReader {
  constructor(base, manifest, fetchFn, verify) {
    this.base = base;
    this.manifest = manifest;
    this.fetch = fetchFn;
    this.verify = verify;
  }

  async bytes(rel) {
    const expected = this.manifest.artifacts[rel];
    if (!expected) throw new ManifestError(`${JSON.stringify(rel)} is not listed in the manifest's artifacts (no checksum)`);
    const url = new URL(rel, this.base);
    const response = await this.fetch(url);
    if (!response.ok) throw new ArtifactMissingError(`bundle ${this.base} is missing ${rel} (HTTP ${response.status})`);
    const data = new Uint8Array(await response.arrayBuffer());
    if (this.verify && (data.byteLength !== expected.bytes || (await sha256Hex(data)) !== expected.sha256)) {
      throw new ChecksumError(
        `${rel} does not match its manifest checksum (${data.byteLength} bytes, expected ${expected.bytes}): ` +
        'the file is corrupted or was modified');
    }
    return data;
  }
}

/** Decode an encoded image (Blob / Response bytes) to ImageData, in a browser. */
export async function decodeImage(blobOrBytes, { exifOrientation = true } = {}) {
  const blob = blobOrBytes instanceof Blob ? blobOrBytes : new Blob([blobOrBytes]);
  const bitmap = await createImageBitmap(blob, {
    colorSpaceConversion: 'none',
    premultiplyAlpha: 'none',
    imageOrientation: exifOrientation ? 'from-image' : 'none',
  });
  try {
    return imageDataOf(bitmap, bitmap.width, bitmap.height);
  } finally {
    bitmap.close();
  }
}

/** Pixels of anything drawImage takes (ImageBitmap, <video>, <img>, <canvas>) as ImageData. */
export function imageDataOf(source, width, height) {
  const canvas = typeof OffscreenCanvas !== 'undefined'
    ? new OffscreenCanvas(width, height)
    : Object.assign(document.createElement('canvas'), { width, height });
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(source, 0, 0, width, height);
  return ctx.getImageData(0, 0, width, height);
}

export class PocketganRuntime {
  constructor({ ort, session, manifest, base, feeds, reader, executionProviders, tensors = null, neutral = null }) {
    this.ort = ort;
    this.session = session;
    this.manifest = manifest;
    this.base = base;
    this.executionProviders = executionProviders;
    this._feeds = feeds;
    this._reader = reader;
    this._queue = Promise.resolve();
    this.inputName = manifest.io.input.name;
    this.outputName = manifest.io.output.name;
    this.inputShape = manifest.io.input.shape;
    this.size = this.inputShape[2];
    this.concepts = manifest.concepts.map((c) => c.name);
    this._concept = this.concepts[0];
    this._mix = [[this._concept, 1]];
    this._tensors = tensors; // concept -> its adapter's float32 tensors (for mixing)
    this._neutral = neutral; // the neutral adapter's tensors, or null: no strength or blending
    this._mixCache = null;
  }

  /** Whether this bundle has strength and blending (a neutral concept). */
  get canMix() {
    return this._neutral !== null;
  }

  /** The active concept and strength, or blend: {name: weight}. */
  get mix() {
    return Object.fromEntries(this._mix);
  }

  /** The manifest entry of a concept (name, description, teacher, golden, ...). */
  conceptInfo(name) {
    const entry = this.manifest.concepts.find((c) => c.name === name);
    if (!entry) throw new UnknownConceptError(`unknown concept ${JSON.stringify(name)}; this bundle has ${this.concepts.join(', ')}`);
    return entry;
  }

  get concept() {
    return this._concept;
  }

  /**
   * Hot swap: the next run feeds this concept's tensors, at `strength` (0: the photo back, 1:
   * the concept as trained, up to 1.5). No session is created, nothing is read.
   */
  setConcept(name, { strength = 1 } = {}) {
    this.conceptInfo(name);
    const mix = this._checkedMix({ [name]: this._weight(name, strength) });
    this._concept = name;
    this._mix = mix;
  }

  /** Blend concepts in one pass: {cartoon: 0.6, stylize: 0.4} (the neutral takes what the weights leave). */
  setBlend(weights) {
    const mix = this._checkedMix(weights);
    this._concept = mix.reduce((best, e) => (e[1] > best[1] ? e : best))[0];
    this._mix = mix;
  }

  _checkedMix(weights) {
    const mix = checkMix(weights, this.concepts);
    const plain = mix.length === 1 && mix[0][1] === 1;
    if (!plain && !this.canMix) {
      throw new MixError('this bundle has no neutral concept, so it has no strength or blending: re-export it (docs/strength-and-blending.md)');
    }
    if (!plain) this._feedsOf(mix); // a mix the graph's rank cannot hold fails here, not at the next run
    return mix;
  }

  _feedsOf(mix) {
    if (mix.length === 1 && mix[0][1] === 1) return this._feeds.get(mix[0][0]);
    const key = JSON.stringify(mix);
    if (this._mixCache && this._mixCache.key === key) return this._mixCache.feeds;
    const inputs = this.manifest.targets.onnx.concept_inputs;
    const half = (this.manifest.targets.onnx.concept_input_dtype || 'float32') === 'float16';
    const mixed = mixTensors(this._tensors, this._neutral, mix, inputs);
    const feeds = {};
    for (const [name, t] of Object.entries(mixed)) {
      feeds[name] = half ? new this.ort.Tensor('float16', toHalf(t.data), t.dims) : new this.ort.Tensor('float32', t.data, t.dims);
    }
    this._mixCache = { key, feeds };
    return feeds;
  }

  _callMix({ concept, strength, blend }) {
    if (blend !== undefined) {
      if (concept !== undefined || strength !== undefined) throw new MixError('give either blend or concept/strength, not both');
      return this._checkedMix(blend);
    }
    if (concept === undefined && strength === undefined) return this._mix;
    const name = concept ?? this._concept;
    this.conceptInfo(name);
    return this._checkedMix({ [name]: strength === undefined ? 1 : this._weight(name, strength) });
  }

  /** The mix weight of a strength: the concept's calibration curve (range checked first). */
  _weight(name, strength) {
    checkMix({ [name]: strength }, this.concepts);
    const curves = (this.manifest.neutral && this.manifest.neutral.strength_curves) || {};
    return strengthWeight(curves[name], strength);
  }

  /** Raw model call: Float32Array (1, 3, S, S) in [-1, 1] -> same shape, edited (options: concept, strength, blend). */
  async runTensor(x, options = {}) {
    const mix = this._callMix(options);
    const expected = this.inputShape.reduce((a, b) => a * b, 1);
    if (x.length !== expected) throw new BundleError(`input has ${x.length} values, the model takes ${JSON.stringify(this.inputShape)}`);
    const feeds = { [this.inputName]: new this.ort.Tensor('float32', x, this.inputShape), ...this._feedsOf(mix) };
    // onnxruntime-web runs one call per session at a time: queue them
    const run = this._queue.then(() => this.session.run(feeds));
    this._queue = run.catch(() => {});
    const outputs = await run;
    const y = outputs[this.outputName];
    const data = y.location && y.location !== 'cpu' ? await y.getData(true) : y.data;
    return data;
  }

  /**
   * Edit an image: ImageData-like {width, height, data (RGBA or RGB bytes)} of any size ->
   * {image: ImageData-like RGBA of the same size, timings: {preprocess, model, postprocess, total} in ms}.
   */
  async edit(image, options = {}) {
    const mix = this._callMix(options);
    const t0 = now();
    const { tensor, placement } = toModelInput(image, this.size);
    const t1 = now();
    const y = await this.runTensor(tensor, options);
    const t2 = now();
    const out = fromModelOutput(y, placement);
    const t3 = now();
    const label = mix.length === 1 && mix[0][1] === 1 ? mix[0][0] : mix.map(([n, w]) => `${n}=${w}`).join(',');
    return { image: out, concept: label, timings: { preprocess: t1 - t0, model: t2 - t1, postprocess: t3 - t2, total: t3 - t0 } };
  }

  /** A file of the bundle, by its manifest path, size and sha256 checked. */
  readArtifact(rel) {
    return this._reader.bytes(rel);
  }

  /** The concepts that ship golden vectors (docs/bundle-format.md). */
  get goldenConcepts() {
    return this.manifest.concepts.filter((c) => c.golden).map((c) => c.name);
  }

  /**
   * Run every concept's golden input and compare with its expected output (PSNR, RGB,
   * peak 255) at the ONNX export's parity threshold. Needs `decode(bytes) -> ImageData`
   * (the default, decodeImage, needs a browser). Returns one result per concept.
   */
  async checkGolden({ decode = (bytes) => decodeImage(bytes, { exifOrientation: false }), thresholdDb } = {}) {
    const threshold = thresholdDb ?? this.manifest.targets.onnx.parity.threshold_db;
    const results = [];
    const cache = new Map();
    const load = async (rel) => {
      if (!cache.has(rel)) cache.set(rel, decode(await this.readArtifact(rel)));
      return cache.get(rel);
    };
    const cases = this.goldenConcepts.map((name) => [name, this.conceptInfo(name).golden, { concept: name }]);
    for (const g of (this.canMix && this.manifest.neutral.golden_mixes) || []) {
      const label = Object.entries(g.weights).map(([n, w]) => `${n}=${w}`).join(',');
      cases.push([label, g, { blend: g.weights }]);
    }
    for (const [label, { input, output }, options] of cases) {
      const [photo, expected] = await Promise.all([load(input), load(output)]);
      const { image, timings } = await this.edit(photo, options);
      const db = psnr(image, expected);
      results.push({ concept: label, psnr: db, thresholdDb: threshold, passed: db >= threshold, ms: timings.total, image, expected });
    }
    return results;
  }

  async release() {
    await this.session.release();
  }
}

/**
 * Open an exported bundle.
 * @param {string|URL} url  the bundle directory (its manifest.json is at url + 'manifest.json')
 * @param {object} options
 * @param {object} options.ort  the onnxruntime-web module (import * as ort from 'onnxruntime-web/wasm')
 * @param {string[]} [options.executionProviders]  e.g. ['webgpu', 'wasm']; default ['wasm']
 * @param {object} [options.sessionOptions]  more InferenceSession options
 * @param {boolean} [options.verify]  check every artifact's size and sha256 (default true)
 * @returns {Promise<PocketganRuntime>}
 */
export async function openBundle(url, { ort, executionProviders = ['wasm'], sessionOptions = {}, verify = true, fetch: fetchFn } = {}) {
  if (!ort || !ort.InferenceSession) throw new PocketganError('openBundle needs { ort }: the onnxruntime-web module');
  const doFetch = fetchFn || globalThis.fetch.bind(globalThis);
  let base = new URL(String(url), globalThis.location ? globalThis.location.href : undefined);
  if (!base.pathname.endsWith('/')) base = new URL(`${base.pathname}/${base.search}`, base);
  const response = await doFetch(new URL('manifest.json', base));
  if (!response.ok) throw new ManifestError(`${base} is not a pocketgan bundle: no manifest.json (HTTP ${response.status})`);
  let manifest;
  try {
    manifest = await response.json();
  } catch (e) {
    throw new ManifestError(`${base}manifest.json is not valid JSON: ${e.message}`);
  }
  checkManifest(manifest, String(base));
  const onnx = manifest.targets.onnx;
  const reader = new ArtifactReader(base, manifest, doFetch, verify);
  const conceptInputs = onnx.concept_inputs;
  const names = Object.keys(conceptInputs);
  // int8 exports take the concept tensors as float16 (manifest concept_input_dtype)
  const conceptDtype = onnx.concept_input_dtype || 'float32';

  const [modelBytes, adapters, neutralAdapter] = await Promise.all([
    reader.bytes(onnx.model),
    Promise.all(manifest.concepts.map(async (c) => [c.name, parseOnnxAdapter(await reader.bytes(onnx.adapters[c.name]))])),
    onnx.neutral ? reader.bytes(onnx.neutral).then(parseOnnxAdapter) : null,
  ]);
  const { model, removed, inputs } = stripInitializers(modelBytes, names);
  const missing = names.filter((n) => !inputs.includes(n));
  if (missing.length) throw new BundleError(`the ONNX model lacks the concept inputs ${missing.slice(0, 3).join(', ')} listed in the manifest`);

  const session = await ort.InferenceSession.create(model, { executionProviders, graphOptimizationLevel: 'all', ...sessionOptions });
  const io = manifest.io;
  if (!session.inputNames.includes(io.input.name)) {
    throw new BundleError(`ONNX model inputs ${JSON.stringify(session.inputNames.slice(0, 3))}… lack the manifest's io.input ${JSON.stringify(io.input.name)}`);
  }
  const notFed = names.filter((n) => !session.inputNames.includes(n));
  if (notFed.length) throw new BundleError(`concept inputs ${notFed.slice(0, 3).join(', ')} are not feedable (removed defaults: ${removed.length})`);
  if (session.outputNames.length !== 1 || session.outputNames[0] !== io.output.name) {
    throw new BundleError(`ONNX model outputs ${JSON.stringify(session.outputNames)}, manifest says [${JSON.stringify(io.output.name)}]`);
  }

  const feeds = new Map();
  const floats = new Map(); // concept -> float32 tensors, what strength and blending mix
  const all = neutralAdapter ? [...adapters, [NEUTRAL, neutralAdapter]] : adapters;
  // the second (mix) LoRA's inputs: no adapter sets them; zero unless a mix runs
  const mixNames = names.filter(isMixInput);
  const adapterNames = names.filter((n) => !isMixInput(n));
  const zeros = {};
  for (const name of mixNames) {
    const n = conceptInputs[name].reduce((a, b) => a * b, 1);
    zeros[name] = conceptDtype === 'float16' ? new ort.Tensor('float16', new Uint16Array(n), conceptInputs[name])
      : new ort.Tensor('float32', new Float32Array(n), conceptInputs[name]);
  }
  const neutralRanks = (manifest.neutral && manifest.neutral.ranks) || {};
  for (const [concept, adapter] of all) {
    const tensors = { ...zeros };
    const values = {};
    for (const name of adapterNames) {
      const p = adapter.parameters.get(name);
      if (!p) throw new BundleError(`adapter of ${JSON.stringify(concept)} lacks ${name}`);
      let want = conceptInputs[name];
      const layer = name.slice(0, name.lastIndexOf('.lora_'));
      if (concept === NEUTRAL && layer in neutralRanks) { // the neutral adapter is at its own ranks
        want = name.endsWith('.lora_A.weight') ? [neutralRanks[layer], ...want.slice(1)] : [want[0], neutralRanks[layer], ...want.slice(2)];
      }
      if (JSON.stringify(p.dims) !== JSON.stringify(want)) {
        throw new BundleError(`adapter of ${JSON.stringify(concept)}: ${name} has shape ${JSON.stringify(p.dims)}, the model takes ${JSON.stringify(want)}`);
      }
      if (p.dtype !== conceptDtype) {
        throw new BundleError(`adapter of ${JSON.stringify(concept)}: ${name} is ${p.dtype}, the model takes ${conceptDtype}`);
      }
      tensors[name] = conceptDtype === 'float16' ? new ort.Tensor('float16', p.half, p.dims) : new ort.Tensor('float32', p.data, p.dims);
      values[name] = { dims: p.dims, data: p.data };
    }
    if (adapter.parameters.size !== adapterNames.length) {
      const extra = [...adapter.parameters.keys()].filter((n) => !(n in conceptInputs));
      throw new BundleError(`adapter of ${JSON.stringify(concept)} holds tensors the model does not take: ${extra.slice(0, 3).join(', ')}`);
    }
    feeds.set(concept, tensors);
    floats.set(concept, values);
  }
  const neutral = floats.get(NEUTRAL) || null;
  floats.delete(NEUTRAL);
  feeds.delete(NEUTRAL);
  return new PocketganRuntime({ ort, session, manifest, base, feeds, reader, executionProviders, tensors: floats, neutral });
}
