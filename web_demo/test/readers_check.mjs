// Runs the web runtime's bundle readers in Node on an exported bundle, for
// tests/test_web_demo.py to compare with ONNX Runtime's own reading.
// Usage: node readers_check.mjs BUNDLE OUT
// OUT/stripped.onnx: the base graph with its concept defaults removed (lib/onnx_model.js);
// OUT/<concept>.json: the adapter's tensors as read by lib/onnx_adapter.js;
// OUT/summary.json: what was removed, the graph's inputs, the adapters' versions.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseOnnxAdapter } from '../lib/onnx_adapter.js';
import { stripInitializers } from '../lib/onnx_model.js';

const [bundle, out] = process.argv.slice(2);
const manifest = JSON.parse(readFileSync(join(bundle, 'manifest.json'), 'utf8'));
const onnx = manifest.targets.onnx;
const { model, removed, inputs } = stripInitializers(new Uint8Array(readFileSync(join(bundle, onnx.model))), Object.keys(onnx.concept_inputs));
writeFileSync(join(out, 'stripped.onnx'), model);
const versions = {};
for (const [concept, rel] of Object.entries(onnx.adapters)) {
  const adapter = parseOnnxAdapter(readFileSync(join(bundle, rel)));
  versions[concept] = [adapter.formatVersion, adapter.adapterVersion, adapter.modelVersion];
  const tensors = {};
  for (const [name, { dims, data }] of adapter.parameters) tensors[name] = { dims, data: Array.from(data) };
  writeFileSync(join(out, `${concept}.json`), JSON.stringify(tensors));
}
writeFileSync(join(out, 'summary.json'), JSON.stringify({ removed, inputs, versions }));
