// Pre- and post-processing, bit-exact with pocketgan/runtime/imaging.py (numpy + Pillow).
//
// toModelInput letterboxes an RGB(A) image of any size into the model's square input:
// scaled so the longer side is S (Pillow's bicubic resampling, ported below with its
// fixed-point arithmetic), centred, borders filled by reflection (numpy's "reflect"; "edge"
// when a border is not thinner than the image), then x = pixel / 127.5 - 1 as float32
// NCHW. fromModelOutput crops the border off, pixel = rint((y + 1) * 127.5) clipped to
// 0..255, and resizes back to the photo's size. No DOM here: it runs in Node as well.

/** Python's round() and numpy's rint(): halves go to the even neighbour. */
export function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** An ImageData-like {width, height, data} (RGBA or RGB bytes) -> packed RGB bytes. */
export function toRGB(image) {
  const { width, height, data } = image;
  const n = width * height;
  if (!(width > 0 && height > 0)) throw new Error(`image is empty (${width}x${height})`);
  if (data.length === n * 3) return data instanceof Uint8Array ? data : Uint8Array.from(data);
  if (data.length !== n * 4) throw new Error(`image data has ${data.length} bytes, expected ${n * 3} (RGB) or ${n * 4} (RGBA)`);
  const rgb = new Uint8Array(n * 3);
  for (let i = 0, j = 0; i < n; i++, j += 4) {
    rgb[i * 3] = data[j];
    rgb[i * 3 + 1] = data[j + 1];
    rgb[i * 3 + 2] = data[j + 2];
  }
  return rgb;
}

/** Packed RGB -> an ImageData-like {width, height, data: RGBA Uint8ClampedArray}, opaque. */
export function toRGBA(rgb, width, height) {
  const n = width * height;
  const data = new Uint8ClampedArray(n * 4);
  for (let i = 0, j = 0; i < n; i++, j += 4) {
    data[j] = rgb[i * 3];
    data[j + 1] = rgb[i * 3 + 1];
    data[j + 2] = rgb[i * 3 + 2];
    data[j + 3] = 255;
  }
  return { width, height, data };
}

// --- Pillow's ImagingResample (src/libImaging/Resample.c), bicubic, 8 bits per channel ---

const PRECISION_BITS = 32 - 8 - 2;
const ROUNDING = 1 << (PRECISION_BITS - 1);
const FIXED_ONE = 1 << PRECISION_BITS;

function bicubic(x) {
  const a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = scale < 1.0 ? 1.0 : scale;
  const support = 2.0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  const ss = 1.0 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let ww = 0.0;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    for (let x = 0; x < xmax; x++) {
      const w = bicubic((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < ksize; x++) {
      let w = x < xmax ? k[x] : 0;
      if (x < xmax && ww !== 0.0) w /= ww;
      kk[xx * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * FIXED_ONE) : Math.trunc(0.5 + w * FIXED_ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

function clip8(ss) {
  const v = ss >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/**
 * One pass of the separable resize over packed RGB bytes (srcW pixels a row): an image of
 * outW x rows whose pixel (xx, yy) sums the taps of one coefficient row along one axis,
 * rounded to 8 bits. Horizontal: coefficient row xx, taps along source row yy + rowOffset;
 * vertical (rowOffset 0, outW = srcW): coefficient row yy, taps down source column xx.
 */
function resamplePass(src, srcW, outW, rows, rowOffset, horizontal, { ksize, bounds, kk }) {
  const out = new Uint8Array(outW * rows * 3);
  const tapStride = horizontal ? 1 : srcW;
  for (let yy = 0; yy < rows; yy++) {
    for (let xx = 0; xx < outW; xx++) {
      const j = horizontal ? xx : yy;
      const first = bounds[j * 2];
      const taps = bounds[j * 2 + 1];
      const kb = j * ksize;
      const base = (horizontal ? (yy + rowOffset) * srcW : xx) + first * tapStride;
      let s0 = ROUNDING, s1 = ROUNDING, s2 = ROUNDING;
      for (let t = 0; t < taps; t++) {
        const w = kk[kb + t];
        const i = (base + t * tapStride) * 3;
        s0 += src[i] * w;
        s1 += src[i + 1] * w;
        s2 += src[i + 2] * w;
      }
      const o = (yy * outW + xx) * 3;
      out[o] = clip8(s0);
      out[o + 1] = clip8(s1);
      out[o + 2] = clip8(s2);
    }
  }
  return out;
}

/**
 * Pillow's Image.resize((outW, outH), Image.Resampling.BICUBIC) of packed RGB bytes:
 * two separable passes, each rounded to 8 bits. The pass order is Pillow 13's (vertical
 * first when the height shrinks by more than twice as many pixels as the width; Pillow
 * 12 and older always go horizontal first, which moves a few pixels by one level).
 */
export function resizeBicubic(rgb, width, height, outW, outH) {
  if (outW === width && outH === height) return rgb.slice();
  const needH = outW !== width;
  const needV = outH !== height;
  const dh = height - outH;
  const horizontalFirst = !(dh > 0 && dh > (width - outW) * 2);
  const vert = needV || (needH && horizontalFirst) ? coefficients(height, outH) : null;
  const horiz = needH ? coefficients(width, outW) : null;
  if (horizontalFirst) {
    let src = rgb;
    let srcW = width;
    if (needH) {
      // only the rows the vertical pass reads
      const yFirst = vert.bounds[0];
      const yLast = vert.bounds[outH * 2 - 2] + vert.bounds[outH * 2 - 1];
      for (let i = 0; i < outH; i++) vert.bounds[i * 2] -= yFirst;
      src = resamplePass(rgb, width, outW, yLast - yFirst, yFirst, true, horiz);
      srcW = outW;
    }
    return needV ? resamplePass(src, srcW, srcW, outH, 0, false, vert) : src;
  }
  const src = needV ? resamplePass(rgb, width, width, outH, 0, false, vert) : rgb;
  return needH ? resamplePass(src, width, outW, outH, 0, true, horiz) : src;
}

// --- letterbox ---------------------------------------------------------------------------

function reflectIndex(i, n) {
  // numpy.pad(mode="reflect") for a border thinner than n: mirror without repeating the edge
  if (i < 0) return -i;
  if (i >= n) return 2 * (n - 1) - i;
  return i;
}

function edgeIndex(i, n) {
  return i < 0 ? 0 : i >= n ? n - 1 : i;
}

/**
 * An image -> {tensor: Float32Array (1, 3, size, size) in [-1, 1], placement}.
 * `image` is ImageData-like: {width, height, data} with RGBA or RGB bytes.
 */
export function toModelInput(image, size) {
  const { width: w, height: h } = image;
  let rgb = toRGB(image);
  const scale = size / Math.max(h, w);
  const ih = Math.max(1, roundHalfEven(h * scale));
  const iw = Math.max(1, roundHalfEven(w * scale));
  if (ih !== h || iw !== w) rgb = resizeBicubic(rgb, w, h, iw, ih);
  const top = Math.floor((size - ih) / 2);
  const left = Math.floor((size - iw) / 2);
  const reflect = Math.max(top, size - ih - top) < ih && Math.max(left, size - iw - left) < iw;
  const index = reflect ? reflectIndex : edgeIndex;
  const plane = size * size;
  const tensor = new Float32Array(3 * plane);
  const cols = new Int32Array(size);
  for (let x = 0; x < size; x++) cols[x] = index(x - left, iw);
  for (let y = 0; y < size; y++) {
    const row = index(y - top, ih) * iw;
    for (let x = 0; x < size; x++) {
      const i = (row + cols[x]) * 3;
      const o = y * size + x;
      for (let c = 0; c < 3; c++) {
        // float32 like numpy: (pixel as float32) / 127.5 - 1.0
        tensor[c * plane + o] = Math.fround(Math.fround(rgb[i + c] / 127.5) - 1.0);
      }
    }
  }
  const placement = { height: h, width: w, top, left, innerHeight: ih, innerWidth: iw, size };
  return { tensor, placement };
}

/** (1, 3, size, size) float32 in [-1, 1] -> ImageData-like RGBA of the photo's size. */
export function fromModelOutput(tensor, placement) {
  const { height, width, top, left, innerHeight: ih, innerWidth: iw, size } = placement;
  const plane = size * size;
  let rgb = new Uint8Array(ih * iw * 3);
  for (let y = 0; y < ih; y++) {
    for (let x = 0; x < iw; x++) {
      const src = (top + y) * size + left + x;
      const o = (y * iw + x) * 3;
      for (let c = 0; c < 3; c++) {
        // float32 like numpy: rint((y + 1.0) * 127.5), clipped to 0..255
        const v = roundHalfEven(Math.fround(Math.fround(tensor[c * plane + src] + 1.0) * 127.5));
        rgb[o + c] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    }
  }
  if (ih !== height || iw !== width) rgb = resizeBicubic(rgb, iw, ih, width, height);
  return toRGBA(rgb, width, height);
}

/** PSNR in dB between two ImageData-likes of the same size (RGB channels, peak 255). */
export function psnr(a, b) {
  if (a.width !== b.width || a.height !== b.height) throw new Error(`size mismatch: ${a.width}x${a.height} vs ${b.width}x${b.height}`);
  const x = toRGB(a);
  const y = toRGB(b);
  let sum = 0;
  for (let i = 0; i < x.length; i++) {
    const d = x[i] - y[i];
    sum += d * d;
  }
  const mse = sum / x.length;
  return mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse);
}
