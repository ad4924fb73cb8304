// The web runtime of a GENERATION bundle (docs/bundle-format.md, "Generation bundles"): a
// text prompt and a seed in, an S x S image out, with onnxruntime-web. It implements the
// three steps every generation runtime does, so a (prompt, seed) pair gives the picture of
// pocketgan.runtime.GenerationRuntime (Python), Kotlin and Swift:
//
//   1. prompt states: lower-case, words = runs of [a-z0-9'-], row = 1 + fnv1a32(word) % buckets,
//      first `tokens` words, padded with row 0; the rows of prompt_table.safetensors
//      (runtime/prompt_hashing.py);
//   2. noise: SplitMix64 seeded with the 64-bit seed (BigInt: a JS number cannot hold it),
//      u = ((x >> 11) + 0.5) / 2^53, Box-Muller on pairs, float32 in C order
//      (runtime/seeded_noise.py);
//   3. one run (noise, prompt_states) -> image, pixel = rint((y + 1) * 127.5) clipped.
//
//   import * as ort from 'onnxruntime-web/wasm';
//   import { openGenerationBundle } from './lib/generation.js';
//   const gen = await openGenerationBundle('/generation/', { ort });  // manifest checked, every sha256
//   const { image, timings } = await gen.generate('red apple', 3n);   // ImageData-like RGBA, S x S
//
// No DOM here: everything but the model runs in Node as well (test/generate_check.mjs).

import {
  ArtifactMissingError,
  ArtifactReader,
  BundleError,
  FORMAT_NAME,
  ManifestError,
  PocketganError,
  TargetNotFoundError,
  UnsupportedFormatError,
} from '../pocketgan.js';
import { roundHalfEven } from './imaging.js';

export const GENERATION_KIND = 'generation';
export const GENERATION_FORMAT_VERSION = 1;
export const NOISE_ALGORITHM = 'splitmix64-box-muller';
export const HASH_NAME = 'fnv1a32';
export const WORD_PATTERN = "[a-z0-9'\\-]+"; // the manifest's prompts.words, as the Python runtime writes it
/** Longest prompt, in code points (Python's len), as pocketgan.runtime.generation. */
export const MAX_PROMPT_CHARS = 4096;
export const MAX_SEED = (1n << 64n) - 1n;

/** A prompt that is not a string or too long, or a seed that is not an integer in [0, 2^64). */
export class GenerationInputError extends PocketganError {}
/** No manifest.json at the URL: no generation bundle is served there. */
export class NoGenerationBundleError extends ArtifactMissingError {}
/** A bundle file that is not what the manifest says it is (a table of another shape, ...). */
export class ArtifactFormatError extends PocketganError {}

const now = () => (globalThis.performance ? performance.now() : Date.now());
const WORD = /[a-z0-9'-]+/g;
const utf8 = new TextEncoder();

// --- 1. prompts ------------------------------------------------------------------------------

/** 32-bit FNV-1a of bytes (0 <= result < 2^32). */
export function fnv1a32(bytes) {
  let h = 0x811c9dc5;
  for (const byte of bytes) h = Math.imul(h ^ byte, 0x01000193) >>> 0; // imul: the product mod 2^32, exactly
  return h >>> 0;
}

/** A prompt checked like the Python runtime's check_prompt: a string of at most MAX_PROMPT_CHARS code points. */
export function checkPrompt(prompt) {
  if (typeof prompt !== 'string') throw new GenerationInputError(`a prompt is a string, got ${typeof prompt}`);
  // Python counts code points; a JS string's length counts UTF-16 units (an emoji is 2)
  const chars = prompt.length <= MAX_PROMPT_CHARS ? prompt.length : [...prompt].length;
  if (chars > MAX_PROMPT_CHARS) throw new GenerationInputError(`the prompt has ${chars} characters, more than ${MAX_PROMPT_CHARS}`);
  return prompt;
}

/** The prompt's words, lower-cased, in order (Python: re.findall(WORD_PATTERN, prompt.lower())). */
export function promptWords(prompt) {
  // toLowerCase and str.lower both apply Unicode's full mappings ("İ" -> "i̇", Kelvin sign -> "k")
  return checkPrompt(prompt).toLowerCase().match(WORD) || [];
}

/** The table rows of a prompt: `tokens` numbers, 1 + fnv1a32(word) % buckets per word, then 0s. */
export function promptIds(prompt, buckets, tokens) {
  const ids = promptWords(prompt).slice(0, tokens).map((w) => 1 + (fnv1a32(utf8.encode(w)) % buckets));
  while (ids.length < tokens) ids.push(0);
  return ids;
}

/** Float32Array (1, tokens, width): the rows of `table` ({data, rows, width}) for `prompt`. */
export function promptStates(table, prompt, tokens) {
  const ids = promptIds(prompt, table.rows - 1, tokens);
  const states = new Float32Array(tokens * table.width);
  ids.forEach((row, i) => states.set(table.data.subarray(row * table.width, (row + 1) * table.width), i * table.width));
  return states;
}

// --- 2. noise --------------------------------------------------------------------------------

const GOLDEN = 0x9e3779b97f4a7c15n;
const M1 = 0xbf58476d1ce4e5b9n;
const M2 = 0x94d049bb133111ebn;
const u64 = (x) => BigInt.asUintN(64, x);

/**
 * A seed as a BigInt in [0, 2^64): a bigint, a safe integer number, or a decimal string
 * (what a text field gives: "18446744073709551615" is exact there, not as a number).
 */
export function parseSeed(seed) {
  let value;
  if (typeof seed === 'bigint') value = seed;
  else if (typeof seed === 'number' && Number.isSafeInteger(seed)) value = BigInt(seed);
  else if (typeof seed === 'string' && /^\s*[0-9]{1,20}\s*$/.test(seed)) value = BigInt(seed.trim());
  else {
    const why = typeof seed === 'number' && Number.isInteger(seed) ? ' (above 2^53 a number is not exact: pass a BigInt or a decimal string)' : '';
    throw new GenerationInputError(`a seed is an integer in [0, 2^64), got ${JSON.stringify(String(seed))}${why}`);
  }
  if (value < 0n || value > MAX_SEED) throw new GenerationInputError(`a seed is an integer in [0, 2^64), got ${value}`);
  return value;
}

/** BigUint64Array (count): the first `count` outputs of SplitMix64 seeded with `seed`. */
export function splitmix64(seed, count) {
  const out = new BigUint64Array(count);
  let state = parseSeed(seed);
  for (let i = 0; i < count; i++) {
    state = u64(state + GOLDEN);
    let z = state;
    z = u64((z ^ (z >> 30n)) * M1);
    z = u64((z ^ (z >> 27n)) * M2);
    out[i] = z ^ (z >> 31n);
  }
  return out;
}

/** Float32Array of `count` standard-normal values from `seed`: the same bits as pocketgan.runtime.seeded_noise. */
export function seededNoise(seed, count) {
  const pairs = Math.ceil(count / 2);
  const x = splitmix64(seed, 2 * pairs);
  const z = new Float32Array(count);
  for (let p = 0; p < pairs; p++) {
    // x >> 11 < 2^53: exact as a number; the same float64 operations, in the same order, as numpy
    const u1 = (Number(x[2 * p] >> 11n) + 0.5) / 2 ** 53;
    const u2 = (Number(x[2 * p + 1] >> 11n) + 0.5) / 2 ** 53;
    const r = Math.sqrt(-2.0 * Math.log(u1));
    const angle = 2.0 * Math.PI * u2;
    z[2 * p] = r * Math.cos(angle); // the Float32Array store rounds to nearest even, as astype(float32)
    if (2 * p + 1 < count) z[2 * p + 1] = r * Math.sin(angle);
  }
  return z;
}

// --- files -----------------------------------------------------------------------------------

const MAX_HEADER = 1 << 20;

/**
 * A float32 safetensors file (8-byte little-endian header length, JSON header, raw
 * little-endian data) -> Map name -> {dims, data: Float32Array}. As strict as the Python
 * reader (runtime/tensor_file.py): F32 only, offsets tiling the data, finite values.
 */
export function readFloat32Safetensors(bytes, file) {
  const fail = (why) => new ArtifactFormatError(`${file} is not a valid float32 safetensors file: ${why}`);
  if (bytes.byteLength < 8) throw fail('shorter than its 8-byte header length');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getBigUint64(0, true);
  if (headerLength > BigInt(Math.min(MAX_HEADER, bytes.byteLength - 8))) throw fail(`header length ${headerLength} does not fit the file`);
  const start = 8 + Number(headerLength);
  let header;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, start)));
  } catch (e) {
    throw fail(`header is not JSON (${e.name})`);
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) throw fail('header is not a JSON object');
  const body = bytes.byteLength - start;
  const tensors = new Map();
  const regions = [];
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const keys = entry && typeof entry === 'object' ? Object.keys(entry).sort().join(',') : '';
    if (keys !== 'data_offsets,dtype,shape') throw fail(`tensor ${JSON.stringify(name)} needs exactly dtype, shape and data_offsets`);
    if (entry.dtype !== 'F32') throw fail(`tensor ${JSON.stringify(name)} has dtype ${JSON.stringify(entry.dtype)}, expected F32`);
    const { shape, data_offsets: offsets } = entry;
    if (!Array.isArray(shape) || shape.length > 8 || !shape.every((d) => Number.isInteger(d) && d >= 0 && d <= 1 << 24)) {
      throw fail(`tensor ${JSON.stringify(name)} has shape ${JSON.stringify(shape)}`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(Number.isSafeInteger)) {
      throw fail(`tensor ${JSON.stringify(name)} has data_offsets ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets;
    const count = shape.reduce((a, b) => a * b, 1);
    if (!(begin >= 0 && begin <= end && end <= body) || end - begin !== 4 * count) {
      throw fail(`tensor ${JSON.stringify(name)}: data_offsets ${JSON.stringify(offsets)} do not match shape ${JSON.stringify(shape)}`);
    }
    const data = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      // DataView: the file is little-endian whatever the machine, and begin need not be 4-aligned
      data[i] = view.getFloat32(start + begin + 4 * i, true);
      if (!Number.isFinite(data[i])) throw fail(`tensor ${JSON.stringify(name)} holds non-finite values`);
    }
    regions.push([begin, end]);
    tensors.set(name, { dims: shape, data });
  }
  let position = 0;
  for (const [begin, end] of regions.sort((a, b) => a[0] - b[0] || a[1] - b[1])) {
    if (begin !== position) throw fail('tensor data regions overlap or leave gaps');
    position = end;
  }
  if (position !== body) throw fail('bytes after the last tensor');
  return tensors;
}

/**
 * Parse a generation manifest's text. Golden seeds may be up to 2^63 - 1, which JSON.parse
 * would round to a double: long integer seeds are read as strings first, kept exact.
 */
export function parseGenerationManifest(text, where = 'manifest.json') {
  try {
    // only a key "seed" followed by a bare integer matches: inside a JSON string the quotes are escaped
    return JSON.parse(text.replace(/("seed"\s*:\s*)(\d{16,})(?=\s*[,}])/g, '$1"$2"'));
  } catch (e) {
    throw new ManifestError(`${where} is not valid JSON: ${e.message}`);
  }
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const isShape = (s) => Array.isArray(s) && s.length >= 1 && s.every((d) => Number.isInteger(d) && d >= 1);

/**
 * Check what this runtime relies on in a generation manifest (the Python reader checks the
 * whole schema; this is its part a browser needs): kind, version, the prompt and noise
 * algorithms it implements, shapes agreeing with the architecture, an ONNX export, and a
 * checksum for every file it reads. Throws ManifestError naming the field.
 */
export function checkGenerationManifest(m, where = 'manifest.json') {
  const bad = (field, why) => new ManifestError(`${where}: ${field} ${why}`);
  if (!m || typeof m !== 'object' || Array.isArray(m)) throw new ManifestError(`${where}: manifest must be a JSON object`);
  if (m.format !== FORMAT_NAME) throw new ManifestError(`${where} is not a pocketgan bundle manifest (format=${JSON.stringify(m.format)})`);
  if (m.kind !== GENERATION_KIND) {
    const what = m.kind === undefined ? 'an editing bundle (no "kind"): open it in the Edit tab' : `kind ${JSON.stringify(m.kind)}`;
    throw new ManifestError(`${where} is not a generation bundle: ${what}`);
  }
  if (!Number.isInteger(m.format_version)) throw bad('format_version', 'is missing');
  if (m.format_version > GENERATION_FORMAT_VERSION) {
    throw new UnsupportedFormatError(
      `generation bundle format_version ${m.format_version} is newer than this web runtime supports (${GENERATION_FORMAT_VERSION}); upgrade it to open the bundle`);
  }
  for (const key of ['architecture', 'prompts', 'noise', 'io', 'targets', 'golden', 'artifacts']) {
    if (!m[key] || typeof m[key] !== 'object') throw bad(key, 'is missing');
  }
  const { architecture: arch, prompts: p, noise, io, artifacts } = m;
  const side = arch.image_size;
  if (!Number.isInteger(side) || side < 1 || side > 8192) throw bad('architecture.image_size', `${JSON.stringify(side)} is not in 1..8192`);
  const expect = { hash: HASH_NAME, words: WORD_PATTERN, lowercase: true, padding_row: 0 };
  for (const [key, value] of Object.entries(expect)) {
    if (p[key] !== value) throw bad(`prompts.${key}`, `is ${JSON.stringify(p[key])}; this runtime implements ${JSON.stringify(value)}`);
  }
  for (const key of ['buckets', 'tokens', 'width']) {
    if (!Number.isInteger(p[key]) || p[key] < 1) throw bad(`prompts.${key}`, `${JSON.stringify(p[key])} is not a positive integer`);
  }
  if (p.buckets !== arch.buckets) throw bad('prompts.buckets', `${p.buckets} differs from architecture.buckets ${arch.buckets}`);
  if (p.width !== arch.text_width) throw bad('prompts.width', `${p.width} differs from architecture.text_width ${arch.text_width}`);
  if (typeof p.table !== 'string' || typeof p.tensor !== 'string') throw bad('prompts', 'needs table and tensor');
  if (noise.algorithm !== NOISE_ALGORITHM) throw bad('noise.algorithm', `is ${JSON.stringify(noise.algorithm)}; this runtime implements ${NOISE_ALGORITHM}`);
  if (noise.dtype !== 'float32') throw bad('noise.dtype', `is ${JSON.stringify(noise.dtype)}, not float32`);
  if (!Array.isArray(io.inputs) || io.inputs.length !== 2 || !io.output) throw bad('io', 'needs inputs [noise, prompt_states] and output');
  const image = [1, 3, side, side];
  const states = [1, p.tokens, p.width];
  const shapes = { 'noise.shape': [noise.shape, image], 'io.inputs[0].shape': [io.inputs[0].shape, image],
    'io.inputs[1].shape': [io.inputs[1].shape, states], 'io.output.shape': [io.output.shape, image] };
  for (const [field, [got, want]] of Object.entries(shapes)) {
    if (!isShape(got) || !same(got, want)) throw bad(field, `${JSON.stringify(got)} is not ${JSON.stringify(want)} (architecture.image_size ${side}, prompts tokens x width)`);
  }
  for (const [i, t] of [...io.inputs, io.output].entries()) {
    const field = i < 2 ? `io.inputs[${i}]` : 'io.output';
    if (typeof t.name !== 'string' || !t.name) throw bad(`${field}.name`, 'is missing');
    if (t.dtype !== 'float32') throw bad(`${field}.dtype`, `is ${JSON.stringify(t.dtype)}, not float32`);
  }
  const names = [...io.inputs, io.output].map((t) => t.name);
  if (new Set(names).size !== names.length) throw bad('io', `tensor names ${JSON.stringify(names)} are not distinct`);
  if (io.output.range !== undefined && !same(io.output.range.map(Number), [-1, 1])) throw bad('io.output.range', 'is not [-1, 1]');
  const onnx = m.targets.onnx;
  if (!onnx || typeof onnx.model !== 'string') {
    throw new TargetNotFoundError(`${where}: the generation bundle has no ONNX export, which the web runtime runs; run: pocketgan export BUNDLE --targets onnx`);
  }
  if (!Array.isArray(m.golden)) throw bad('golden', 'is not a list');
  const listed = [['prompts.table', p.table], ['targets.onnx.model', onnx.model]];
  m.golden.forEach((g, i) => {
    if (!g || typeof g.prompt !== 'string' || typeof g.file !== 'string') throw bad(`golden[${i}]`, 'needs prompt, seed and file');
    try {
      parseSeed(g.seed);
    } catch {
      throw bad(`golden[${i}].seed`, `${JSON.stringify(g.seed)} is not an integer in [0, 2^64)`);
    }
    listed.push([`golden[${i}].file`, g.file]);
  });
  for (const [field, rel] of listed) {
    if (!Object.hasOwn(artifacts, rel)) throw bad(field, `${JSON.stringify(rel)} is not listed in artifacts (no checksum)`);
  }
}

// --- 3. the model ----------------------------------------------------------------------------

/** (1, 3, S, S) float32 in [-1, 1] -> ImageData-like RGBA S x S: rint((y + 1) * 127.5) clipped, in float32 like numpy. */
export function toPixels(y, size) {
  const plane = size * size;
  const data = new Uint8ClampedArray(plane * 4);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      const v = roundHalfEven(Math.fround(Math.fround(y[c * plane + i] + 1.0) * 127.5));
      data[4 * i + c] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
    data[4 * i + 3] = 255;
  }
  return { width: size, height: size, data };
}

/** PSNR (dB) of two float arrays in [-1, 1], peak the whole range: what GenerationRuntime.check_golden computes. */
export function psnrRange(a, b) {
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = (a[i] - b[i]) / 2;
    sum += d * d;
  }
  const mse = sum / a.length;
  return mse === 0 ? Infinity : 10 * Math.log10(1 / mse);
}

export class GenerationRuntime {
  constructor({ ort, session, manifest, base, table, reader, executionProviders }) {
    this.ort = ort;
    this.session = session;
    this.manifest = manifest;
    this.base = base;
    this.table = table; // {data: Float32Array, rows: buckets + 1, width}
    this.executionProviders = executionProviders;
    this._reader = reader;
    this._queue = Promise.resolve();
    const [noise, states] = manifest.io.inputs;
    this.noiseName = noise.name;
    this.statesName = states.name;
    this.outputName = manifest.io.output.name;
    this.noiseShape = noise.shape;
    this.statesShape = states.shape;
    this.size = manifest.architecture.image_size;
    this.tokens = manifest.prompts.tokens;
  }

  /** Float32Array (1, tokens, width): the table rows of the prompt's words (all padding for ''). */
  promptStates(prompt) {
    return promptStates(this.table, prompt, this.tokens);
  }

  /** Float32Array (1, 3, S, S): the seed's noise. */
  noise(seed) {
    return seededNoise(seed, 3 * this.size * this.size);
  }

  /** Raw model call: noise (1, 3, S, S) and prompt states (1, tokens, width) -> Float32Array image (1, 3, S, S) in [-1, 1]. */
  async runTensor(noise, states) {
    for (const [x, shape, name] of [[noise, this.noiseShape, this.noiseName], [states, this.statesShape, this.statesName]]) {
      const n = shape.reduce((a, b) => a * b, 1);
      if (!(x instanceof Float32Array) || x.length !== n) throw new GenerationInputError(`${name} must be a Float32Array of ${JSON.stringify(shape)}`);
    }
    const feeds = {
      [this.noiseName]: new this.ort.Tensor('float32', noise, this.noiseShape),
      [this.statesName]: new this.ort.Tensor('float32', states, this.statesShape),
    };
    // onnxruntime-web runs one call per session at a time: queue them
    const run = this._queue.then(() => this.session.run(feeds));
    this._queue = run.catch(() => {});
    const y = (await run)[this.outputName];
    const data = y.location && y.location !== 'cpu' ? await y.getData(true) : y.data;
    if (data.length !== noise.length) throw new BundleError(`the model returned ${data.length} values, expected ${noise.length}`);
    for (const v of data) {
      if (!Number.isFinite(v)) throw new BundleError('the model returned non-finite values');
    }
    return data;
  }

  /**
   * Generate: {image: ImageData-like RGBA S x S, timings: {prompt, noise, model, postprocess, total} ms}.
   * `seed`: a BigInt, a safe integer or a decimal string, in [0, 2^64).
   */
  async generate(prompt, seed = 0n) {
    const t0 = now();
    const states = this.promptStates(prompt);
    const t1 = now();
    const noise = this.noise(seed);
    const t2 = now();
    const y = await this.runTensor(noise, states);
    const t3 = now();
    const image = toPixels(y, this.size);
    const t4 = now();
    return { image, prompt, seed: parseSeed(seed), timings: { prompt: t1 - t0, noise: t2 - t1, model: t3 - t2, postprocess: t4 - t3, total: t4 - t0 } };
  }

  /** A file of the bundle, by its manifest path, size and sha256 checked. */
  readArtifact(rel) {
    return this._reader.bytes(rel);
  }

  /**
   * Every golden case: this runtime's noise and prompt states against the stored ones (the
   * check of a port), and the model run on the stored inputs against PyTorch's image (PSNR,
   * [-1, 1] range) at the ONNX export's parity threshold. One result per case.
   */
  async checkGolden({ thresholdDb } = {}) {
    const threshold = thresholdDb ?? this.manifest.targets.onnx.parity_threshold_db;
    const results = [];
    for (const g of this.manifest.golden) {
      const stored = readFloat32Safetensors(await this.readArtifact(g.file), g.file);
      for (const name of ['noise', 'prompt_states', 'image']) {
        if (!stored.has(name)) throw new ArtifactFormatError(`${g.file} has no tensor ${JSON.stringify(name)}`);
      }
      const noise = this.noise(g.seed);
      const states = this.promptStates(g.prompt);
      const storedNoise = stored.get('noise').data;
      const storedStates = stored.get('prompt_states').data;
      if (storedNoise.length !== noise.length || storedStates.length !== states.length || stored.get('image').data.length !== noise.length) {
        throw new ArtifactFormatError(`${g.file}: golden tensors of other shapes than the manifest's io`);
      }
      let noiseMaxDiff = 0;
      let noiseBitEqual = 0;
      for (let i = 0; i < noise.length; i++) {
        noiseMaxDiff = Math.max(noiseMaxDiff, Math.abs(noise[i] - storedNoise[i]));
        if (Object.is(noise[i], storedNoise[i])) noiseBitEqual += 1;
      }
      const statesEqual = states.every((v, i) => Object.is(v, storedStates[i]));
      const t0 = now();
      const y = await this.runTensor(storedNoise, storedStates);
      const ms = now() - t0;
      const db = psnrRange(y, stored.get('image').data);
      const passed = noiseMaxDiff < 1e-6 && statesEqual && db >= threshold;
      results.push({ prompt: g.prompt, seed: String(g.seed), file: g.file, noiseMaxDiff, noiseBitEqual, noiseValues: noise.length,
        statesEqual, psnr: db, thresholdDb: threshold, passed, ms, image: toPixels(y, this.size) });
    }
    return results;
  }

  async release() {
    await this.session.release();
  }
}

function checkSession(session, manifest) {
  const { inputs, output } = manifest.io;
  const want = inputs.map((t) => t.name);
  if (!same([...session.inputNames], want)) {
    throw new BundleError(`the ONNX model's inputs are ${JSON.stringify(session.inputNames)}, the manifest's io.inputs ${JSON.stringify(want)}`);
  }
  if (!same([...session.outputNames], [output.name])) {
    throw new BundleError(`the ONNX model's outputs are ${JSON.stringify(session.outputNames)}, the manifest's io.output [${JSON.stringify(output.name)}]`);
  }
  // onnxruntime-web 1.21+ tells the declared types and shapes too
  const metadata = [...(session.inputMetadata || []), ...(session.outputMetadata || [])];
  for (const [i, meta] of metadata.entries()) {
    const spec = i < inputs.length ? inputs[i] : output;
    if (meta && meta.isTensor && (meta.type !== 'float32' || !same(meta.shape, spec.shape))) {
      throw new BundleError(`the ONNX model's ${spec.name} is ${meta.type} ${JSON.stringify(meta.shape)}, the manifest says float32 ${JSON.stringify(spec.shape)}`);
    }
  }
}

/**
 * Open a generation bundle.
 * @param {string|URL} url  the bundle directory (its manifest.json is at url + 'manifest.json')
 * @param {object} options  as openBundle's (pocketgan.js): ort, executionProviders, sessionOptions, verify, fetch
 * @returns {Promise<GenerationRuntime>}
 */
export async function openGenerationBundle(url, { ort, executionProviders = ['wasm'], sessionOptions = {}, verify = true, fetch: fetchFn } = {}) {
  if (!ort || !ort.InferenceSession) throw new PocketganError('openGenerationBundle needs { ort }: the onnxruntime-web module');
  const doFetch = fetchFn || globalThis.fetch.bind(globalThis);
  let base = new URL(String(url), globalThis.location ? globalThis.location.href : undefined);
  if (!base.pathname.endsWith('/')) base = new URL(`${base.pathname}/${base.search}`, base);
  const response = await doFetch(new URL('manifest.json', base));
  if (!response.ok) throw new NoGenerationBundleError(`no generation bundle at ${base}: no manifest.json (HTTP ${response.status})`);
  const manifest = parseGenerationManifest(await response.text(), `${base}manifest.json`);
  checkGenerationManifest(manifest, `${base}manifest.json`);
  const reader = new ArtifactReader(base, manifest, doFetch, verify);
  const p = manifest.prompts;
  const [tableBytes, modelBytes] = await Promise.all([reader.bytes(p.table), reader.bytes(manifest.targets.onnx.model)]);
  const table = readFloat32Safetensors(tableBytes, p.table).get(p.tensor);
  if (!table || !same(table.dims, [p.buckets + 1, p.width])) {
    const got = table ? `shape ${JSON.stringify(table.dims)}` : 'no such tensor';
    throw new ArtifactFormatError(`${p.table}: tensor ${JSON.stringify(p.tensor)} must be float32 [${p.buckets + 1}, ${p.width}] (prompts.buckets + 1, prompts.width), found ${got}`);
  }
  const session = await ort.InferenceSession.create(modelBytes, { executionProviders, graphOptimizationLevel: 'all', ...sessionOptions });
  try {
    checkSession(session, manifest);
  } catch (e) {
    await session.release();
    throw e;
  }
  return new GenerationRuntime({ ort, session, manifest, base, table: { data: table.data, rows: p.buckets + 1, width: p.width }, reader, executionProviders });
}
