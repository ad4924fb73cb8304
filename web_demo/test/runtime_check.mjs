// pocketgan.js's openBundle in Node, on an exported bundle, with a stand-in for
// onnxruntime-web and a fetch that can corrupt what it serves: the errors a browser app
// gets for a bad bundle. Usage: node runtime_check.mjs BUNDLE -> JSON {case: outcome}.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openBundle } from '../pocketgan.js';

const bundle = process.argv[2];
const pristine = JSON.parse(readFileSync(join(bundle, 'manifest.json'), 'utf8'));

function fetcher({ manifest = pristine, corrupt = {} } = {}) {
  return async (url) => {
    const rel = decodeURIComponent(new URL(url).pathname.replace(/^\/bundle\//, ''));
    if (rel === 'manifest.json') return new Response(JSON.stringify(manifest));
    let bytes;
    try {
      bytes = new Uint8Array(readFileSync(join(bundle, rel)));
    } catch {
      return new Response('not found', { status: 404 });
    }
    if (corrupt[rel]) bytes = corrupt[rel](bytes);
    return new Response(bytes);
  };
}

// onnxruntime-web's surface that openBundle uses; the session echoes its input
function fakeOrt({ dropInput } = {}) {
  class Tensor {
    constructor(type, data, dims) { Object.assign(this, { type, data, dims, location: 'cpu' }); }
  }
  return {
    Tensor,
    InferenceSession: {
      async create() {
        const m = pristine;
        const inputNames = [m.io.input.name, ...Object.keys(m.targets.onnx.concept_inputs)].filter((n) => n !== dropInput);
        return {
          inputNames,
          outputNames: [m.io.output.name],
          runs: [],
          async run(feeds) {
            this.runs.push(Object.keys(feeds).length);
            return { [m.io.output.name]: new Tensor('float32', feeds[m.io.input.name].data, feeds[m.io.input.name].dims) };
          },
          async release() {},
        };
      },
    },
  };
}

const clone = (x) => JSON.parse(JSON.stringify(x));
const onnx = pristine.targets.onnx;
const firstAdapter = Object.values(onnx.adapters)[0];
const cases = {
  ok: {},
  flipped_byte: { corrupt: { [firstAdapter]: (b) => { b[b.length >> 1] ^= 0xff; return b; } } },
  truncated: { corrupt: { [onnx.model]: (b) => b.subarray(0, b.length - 1) } },
  newer_format: { manifest: { ...clone(pristine), format_version: 3 } },
  merged_only: { manifest: (() => { const m = clone(pristine); m.targets.onnx = { ...m.targets.onnx, concept_mode: 'merged' }; delete m.targets.onnx.adapters; return m; })() },
  no_onnx: { manifest: { ...clone(pristine), targets: {} } },
  unlisted: { manifest: (() => { const m = clone(pristine); delete m.artifacts[onnx.model]; return m; })() },
  missing_input: { ort: { dropInput: pristine.io.input.name } },
};

const out = {};
for (const [name, c] of Object.entries(cases)) {
  try {
    const rt = await openBundle('http://demo.test/bundle/', { ort: fakeOrt(c.ort), fetch: fetcher(c) });
    const size = rt.size;
    const photo = { width: 40, height: 30, data: new Uint8ClampedArray(40 * 30 * 4).fill(200) };
    const { image } = await rt.edit(photo, { concept: rt.concepts[rt.concepts.length - 1] });
    let unknown = null;
    try { rt.setConcept('no-such-concept'); } catch (e) { unknown = e.name; }
    out[name] = { ok: true, concepts: rt.concepts, size, edited: [image.width, image.height, image.data[0]],
      feeds: rt.session.runs[0], unknownConcept: unknown };
  } catch (e) {
    out[name] = { ok: false, error: e.name, message: e.message };
  }
}
console.log(JSON.stringify(out));
