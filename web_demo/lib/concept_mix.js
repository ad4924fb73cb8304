// Concept strength and blending: the same mix as pocketgan/runtime/concept_mix.py.
//
// A mix {c_1: w_1, ...} (each weight in [0, 1.5], sum at most 1.5) runs
//   delta  = sum_i w_i delta(c_i) + (1 - sum w) delta(neutral)
//   tokens = neutral + sum_i w_i (tokens(c_i) - neutral)
// Each LoRA delta is B @ A; the weighted sum concatenates the A rows and the weighted B
// columns. A bundle with a neutral concept sizes the graph's rank for one or two concepts
// plus the neutral, which is exact. The Python runtime reduces larger mixes with a
// truncated SVD; here they are refused (MixError) rather than approximated differently.

export const STRENGTH_MIN = 0;
export const STRENGTH_MAX = 1.5;
export const TOKENS = 'concept_tokens';
const A = '.lora_A.weight';
const B = '.lora_B.weight';
export const MIX_A = '.lora_A.mix.weight';
export const MIX_B = '.lora_B.mix.weight';

/** Whether a concept input belongs to the second (mix) LoRA, which no adapter sets. */
export function isMixInput(name) {
  return name.endsWith(MIX_A) || name.endsWith(MIX_B);
}

export class MixError extends Error {
  constructor(message) {
    super(message);
    this.name = 'MixError';
  }
}

/** Validate a mix {name: weight} against the concept names; returns [[name, weight], ...]. */
export function checkMix(weights, known) {
  const entries = Object.entries(weights || {});
  if (!entries.length) throw new MixError('a mix names at least one concept with its weight');
  for (const [name, w] of entries) {
    if (!known.includes(name)) throw new MixError(`unknown concept ${JSON.stringify(name)}; this bundle has ${known.join(', ')}`);
    if (typeof w !== 'number' || !Number.isFinite(w)) throw new MixError(`the weight of ${JSON.stringify(name)} must be a number`);
    if (w < STRENGTH_MIN || w > STRENGTH_MAX) throw new MixError(`the weight of ${JSON.stringify(name)} is ${w}; strengths and weights go from 0 to 1.5`);
  }
  const total = entries.reduce((s, [, w]) => s + w, 0);
  if (total > STRENGTH_MAX + 1e-9) throw new MixError(`the weights sum to ${total}; a mix may sum to at most 1.5`);
  return entries;
}

/**
 * The mix weight of a concept's strength: its calibration curve (the weights of strengths
 * 0, 0.1, ..., 1, manifest neutral.strength_curves) interpolated; past 1 (or without a
 * curve) the strength itself. Same as strength_weight in pocketgan/runtime/concept_mix.py.
 */
export function strengthWeight(curve, strength) {
  if (!curve || strength >= 1) return strength;
  const pos = strength * (curve.length - 1);
  const i = Math.min(Math.floor(pos), curve.length - 2);
  return curve[i] + (pos - i) * (curve[i + 1] - curve[i]);
}

function product(dims) {
  return dims.reduce((a, b) => a * b, 1);
}

/**
 * The concept inputs of a mix, float32: both LoRA slots (the concepts' and the mix one),
 * filled in order with the terms' rank rows (like mix_tensors + split_slots in Python).
 * @param {Map<string, Object<string, {dims: number[], data: Float32Array}>>} concepts  per concept, its adapter tensors
 * @param {Object<string, {dims: number[], data: Float32Array}>} neutral  the neutral adapter's tensors (its own ranks)
 * @param {Array<[string, number]>} entries  a checked mix (checkMix)
 * @param {Object<string, number[]>} inputs  the graph's concept inputs: name -> dims
 * @returns {Object<string, {dims: number[], data: Float32Array}>}
 */
export function mixTensors(concepts, neutral, entries, inputs) {
  const neutralWeight = 1 - entries.reduce((s, [, w]) => s + w, 0);
  const terms = entries.filter(([, w]) => w !== 0).map(([name, w]) => [concepts.get(name), w]);
  if (neutralWeight !== 0) terms.push([neutral, neutralWeight]);
  const out = {};
  const n = neutral[TOKENS].data;
  const tokens = Float32Array.from(n);
  for (const [name, w] of entries) {
    const t = concepts.get(name)[TOKENS].data;
    for (let i = 0; i < tokens.length; i++) tokens[i] += Math.fround(w) * (t[i] - n[i]);
  }
  out[TOKENS] = { dims: inputs[TOKENS], data: tokens };
  for (const key of Object.keys(inputs)) {
    if (!key.endsWith(A)) continue;
    const layer = key.slice(0, -A.length);
    // the two slots of the layer: [A name, B name] with their dims, filled in this order
    const slots = [[layer + A, layer + B], [layer + MIX_A, layer + MIX_B]].filter(([a]) => a in inputs);
    const outs = slots.map(([a, b]) => ({ a, b, aDims: inputs[a], bDims: inputs[b],
      aData: new Float32Array(product(inputs[a])), bData: new Float32Array(product(inputs[b])) }));
    const capacity = outs.reduce((sum, o) => sum + o.aDims[0], 0);
    let k = 0;
    for (const [tensors, w] of terms) {
      const ta = tensors[layer + A];
      const tb = tensors[layer + B];
      const rank = ta.dims[0];
      const row = product(ta.dims.slice(1));
      const outCh = tb.dims[0];
      const tail = product(tb.dims.slice(2)); // 1: B is (out, r, 1, 1) or (out, r)
      for (let j = 0; j < rank; j++) {
        let aUsed = false;
        for (let i = 0; i < row && !aUsed; i++) aUsed = ta.data[j * row + i] !== 0;
        let bUsed = false;
        for (let o = 0; o < outCh && !bUsed; o++) bUsed = tb.data[(o * rank + j) * tail] !== 0;
        if (!aUsed || !bUsed) continue; // zero padding adds nothing
        if (k >= capacity) {
          throw new MixError(`this mix needs more than the graph's rank ${capacity} at ${layer}: blend at most two concepts here ` +
            '(the Python runtime reduces larger mixes by SVD)');
        }
        // rank row k goes to the first slot while it has room, then to the second
        let slot = 0;
        let kk = k;
        while (kk >= outs[slot].aDims[0]) kk -= outs[slot++].aDims[0];
        const o2 = outs[slot];
        const r2 = o2.aDims[0];
        o2.aData.set(ta.data.subarray(j * row, (j + 1) * row), kk * row);
        for (let o = 0; o < outCh; o++) o2.bData[(o * r2 + kk) * tail] = Math.fround(w) * tb.data[(o * rank + j) * tail];
        k += 1;
      }
    }
    for (const o of outs) {
      out[o.a] = { dims: o.aDims, data: o.aData };
      out[o.b] = { dims: o.bDims, data: o.bData };
    }
  }
  return out;
}

/** float32 -> IEEE half bits (round to nearest even), for graphs whose concept inputs are float16. */
export function toHalf(values) {
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    f32[0] = values[i];
    const x = u32[0];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    let e = exp - 127 + 15;
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      let half = mant >>> shift;
      const rest = mant & ((1 << shift) - 1);
      const halfway = 1 << (shift - 1);
      if (rest > halfway || (rest === halfway && (half & 1))) half += 1;
      out[i] = sign | half;
      continue;
    }
    let half = (e << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (half & 1))) half += 1;
    out[i] = sign | half;
  }
  return out;
}
