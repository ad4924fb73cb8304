// Turns the bundle's separate-mode ONNX graph into one onnxruntime-web can feed concepts to.
//
// In the bundle every concept tensor (concept_tokens, <layer>.lora_A/B.weight) is a graph
// input with a same-named zero initializer as its default: ONNX Runtime calls these
// "overridable initializers". onnxruntime-web only accepts feeds for the graph's *required*
// inputs (InferenceSession.inputNames), so the web runtime removes those default
// initializers from the model bytes before creating the session: the concept tensors
// become required inputs and every run feeds the active concept's. Nothing else changes.
//
// A minimal protobuf walk (wire format only): ModelProto.graph = field 7,
// GraphProto.initializer = field 5 (TensorProto), TensorProto.name = field 8.

const MODEL_GRAPH = 7;
const GRAPH_INITIALIZER = 5;
const GRAPH_INPUT = 11;
const TENSOR_NAME = 8;
const VALUE_INFO_NAME = 1;

function readVarint(bytes, pos) {
  let value = 0;
  let scale = 1;
  for (;;) {
    if (pos >= bytes.length) throw new Error('truncated protobuf varint');
    const b = bytes[pos++];
    value += (b & 0x7f) * scale;
    if (!(b & 0x80)) return [value, pos];
    scale *= 128;
  }
}

function encodeVarint(value) {
  const out = [];
  while (value >= 0x80) {
    out.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
  return Uint8Array.from(out);
}

/** Yields {field, wire, start, end, dataStart, dataEnd} for each field in bytes[from, to). */
function* fields(bytes, from, to) {
  let pos = from;
  while (pos < to) {
    const start = pos;
    let key;
    [key, pos] = readVarint(bytes, pos);
    const field = Math.floor(key / 8);
    const wire = key % 8;
    let dataStart = pos;
    if (wire === 0) {
      [, pos] = readVarint(bytes, pos);
    } else if (wire === 1) {
      pos += 8;
    } else if (wire === 2) {
      let length;
      [length, pos] = readVarint(bytes, pos);
      dataStart = pos;
      pos += length;
    } else if (wire === 5) {
      pos += 4;
    } else {
      throw new Error(`unsupported protobuf wire type ${wire}`);
    }
    if (pos > to) throw new Error('truncated protobuf field');
    yield { field, wire, start, end: pos, dataStart, dataEnd: pos };
  }
}

function stringField(bytes, from, to, number) {
  for (const f of fields(bytes, from, to)) {
    if (f.field === number && f.wire === 2) return new TextDecoder().decode(bytes.subarray(f.dataStart, f.dataEnd));
  }
  return null;
}

function concat(chunks) {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let pos = 0;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.byteLength;
  }
  return out;
}

/**
 * Remove the initializers named in `names` from an ONNX model.
 * @param {Uint8Array} model  serialized ModelProto
 * @param {Iterable<string>} names  graph inputs whose default initializer goes
 * @returns {{model: Uint8Array, removed: string[], inputs: string[]}} the new bytes, the
 *   initializers removed, and the graph's input names
 */
export function stripInitializers(model, names) {
  model = ArrayBuffer.isView(model) ? new Uint8Array(model.buffer, model.byteOffset, model.byteLength) : new Uint8Array(model);
  const wanted = new Set(names);
  const chunks = [];
  const removed = [];
  const inputs = [];
  let graphs = 0;
  for (const f of fields(model, 0, model.length)) {
    if (f.field !== MODEL_GRAPH || f.wire !== 2) {
      chunks.push(model.subarray(f.start, f.end));
      continue;
    }
    graphs++;
    const kept = [];
    for (const g of fields(model, f.dataStart, f.dataEnd)) {
      if (g.field === GRAPH_INITIALIZER && g.wire === 2) {
        const name = stringField(model, g.dataStart, g.dataEnd, TENSOR_NAME);
        if (wanted.has(name)) {
          removed.push(name);
          continue;
        }
      } else if (g.field === GRAPH_INPUT && g.wire === 2) {
        inputs.push(stringField(model, g.dataStart, g.dataEnd, VALUE_INFO_NAME));
      }
      kept.push(model.subarray(g.start, g.end));
    }
    const graph = concat(kept);
    chunks.push(encodeVarint(MODEL_GRAPH * 8 + 2), encodeVarint(graph.byteLength), graph);
  }
  if (graphs !== 1) throw new Error(`not an ONNX model: ${graphs} graphs`);
  return { model: concat(chunks), removed, inputs };
}
