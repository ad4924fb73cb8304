// Reads ONNX Runtime's .onnx_adapter files (FlatBuffers, schema
// onnxruntime/lora/adapter_format/adapter_schema.fbs, file identifier "TORT"):
//
//   table Parameter { name: string; dims: [int64]; data_type: TensorDataType; raw_data: [uint8]; }
//   table Adapter { format_version: int; adapter_version: int; model_version: int; parameters: [Parameter]; }
//
// onnxruntime-web has no adapter API, so the web runtime reads the tensors here and feeds
// them as ordinary graph inputs. Only what the schema needs of FlatBuffers is implemented:
// little-endian tables with vtables, vectors, strings. No DOM: it runs in Node as well.

const FLOAT = 1;
const FLOAT16 = 10;

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  check(pos, size) {
    if (pos < 0 || pos + size > this.bytes.byteLength) throw new Error(`offset ${pos}+${size} is outside the file`);
    return pos;
  }

  u16(pos) { return this.view.getUint16(this.check(pos, 2), true); }
  u32(pos) { return this.view.getUint32(this.check(pos, 4), true); }
  i32(pos) { return this.view.getInt32(this.check(pos, 4), true); }

  /** Absolute position of field `id` of the table at `table`, or 0 when absent. */
  field(table, id) {
    const vtable = table - this.i32(table);
    const vtableSize = this.u16(vtable);
    const slot = 4 + 2 * id;
    const offset = slot < vtableSize ? this.u16(vtable + slot) : 0;
    return offset ? table + offset : 0;
  }

  /** Follow the uoffset stored at `pos`. */
  deref(pos) { return pos + this.u32(pos); }

  int(table, id) {
    const pos = this.field(table, id);
    return pos ? this.i32(pos) : 0;
  }

  /** [start, length] of the vector referenced by field `id`, or null. */
  vector(table, id) {
    const pos = this.field(table, id);
    if (!pos) return null;
    const vec = this.deref(pos);
    return [vec + 4, this.u32(vec)];
  }

  string(table, id) {
    const v = this.vector(table, id);
    if (!v) return null;
    const [start, length] = v;
    return new TextDecoder().decode(this.bytes.subarray(this.check(start, length), start + length));
  }
}

function float16ToFloat32(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/**
 * Parse an .onnx_adapter file.
 * @param {ArrayBuffer|Uint8Array} data
 * @returns {{formatVersion: number, adapterVersion: number, modelVersion: number,
 *            parameters: Map<string, {dims: number[], data: Float32Array, dtype: string, half?: Uint16Array}>}}
 *   ``data``: the values as float32 (float16 ones widened); ``dtype``: the file's own type,
 *   ``float32`` or ``float16``; ``half``: the raw float16 bits (float16 only), what a
 *   model whose concept inputs are float16 takes
 */
export function parseOnnxAdapter(data) {
  // a plain Uint8Array view (Node's Buffer.slice does not copy)
  const bytes = ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);
  if (bytes.byteLength < 8) throw new Error('not an .onnx_adapter file: too short');
  const ident = new TextDecoder().decode(bytes.subarray(4, 8));
  if (ident !== 'TORT') throw new Error(`not an .onnx_adapter file: identifier ${JSON.stringify(ident)}, expected "TORT"`);
  const r = new Reader(bytes);
  const root = r.deref(0);
  const adapter = {
    formatVersion: r.int(root, 0),
    adapterVersion: r.int(root, 1),
    modelVersion: r.int(root, 2),
    parameters: new Map(),
  };
  const params = r.vector(root, 3);
  if (!params) return adapter;
  const [start, count] = params;
  for (let i = 0; i < count; i++) {
    const table = r.deref(start + 4 * i);
    const name = r.string(table, 0);
    const dimsVec = r.vector(table, 1);
    const dims = [];
    if (dimsVec) {
      for (let d = 0; d < dimsVec[1]; d++) {
        dims.push(Number(r.view.getBigInt64(r.check(dimsVec[0] + 8 * d, 8), true)));
      }
    }
    const dataType = r.int(table, 2);
    const rawVec = r.vector(table, 3);
    const raw = rawVec ? bytes.subarray(r.check(rawVec[0], rawVec[1]), rawVec[0] + rawVec[1]) : new Uint8Array(0);
    const elements = dims.reduce((a, b) => a * b, 1);
    let values;
    let half;
    if (dataType === FLOAT) {
      if (raw.byteLength !== elements * 4) throw new Error(`adapter parameter ${name}: ${raw.byteLength} bytes for ${elements} float32 values`);
      values = new Float32Array(new Uint8Array(raw).buffer); // a copy: aligned, independent of the file's buffer
    } else if (dataType === FLOAT16) {
      if (raw.byteLength !== elements * 2) throw new Error(`adapter parameter ${name}: ${raw.byteLength} bytes for ${elements} float16 values`);
      half = new Uint16Array(new Uint8Array(raw).buffer);
      values = Float32Array.from(half, float16ToFloat32);
    } else {
      throw new Error(`adapter parameter ${name}: data type ${dataType} is not supported (float32 or float16)`);
    }
    if (name === null) throw new Error(`adapter parameter ${i} has no name`);
    adapter.parameters.set(name, half ? { dims, data: values, dtype: 'float16', half } : { dims, data: values, dtype: 'float32' });
  }
  return adapter;
}
