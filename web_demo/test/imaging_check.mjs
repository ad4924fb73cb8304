// Runs lib/imaging.js on cases a Python test wrote, for a bit-exact comparison with
// pocketgan/runtime/imaging.py. Usage: node imaging_check.mjs DIR
// DIR/cases.json: [{name, width, height, size}]; DIR/<name>.rgb: the photo, packed RGB;
// DIR/<name>.out.f32: a model output (1, 3, size, size), float32 little-endian.
// Writes DIR/<name>.in.f32 (the model input) and DIR/<name>.post.rgb (the output image).
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fromModelOutput, toModelInput, toRGB } from '../lib/imaging.js';

const dir = process.argv[2];
const cases = JSON.parse(readFileSync(join(dir, 'cases.json'), 'utf8'));
for (const c of cases) {
  const data = new Uint8Array(readFileSync(join(dir, `${c.name}.rgb`)));
  const { tensor, placement } = toModelInput({ width: c.width, height: c.height, data }, c.size);
  writeFileSync(join(dir, `${c.name}.in.f32`), Buffer.from(tensor.buffer));
  const out = readFileSync(join(dir, `${c.name}.out.f32`));
  const y = new Float32Array(out.buffer.slice(out.byteOffset, out.byteOffset + out.byteLength));
  writeFileSync(join(dir, `${c.name}.post.rgb`), Buffer.from(toRGB(fromModelOutput(y, placement))));
}
console.log(JSON.stringify({ cases: cases.length }));
