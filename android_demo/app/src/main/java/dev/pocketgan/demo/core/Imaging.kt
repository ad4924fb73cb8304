package dev.pocketgan.demo.core

import kotlin.math.ceil
import kotlin.math.log10
import kotlin.math.max

/**
 * Pre- and post-processing, bit-exact with pocketgan/runtime/imaging.py (numpy + Pillow) and
 * web_demo/lib/imaging.js.
 *
 * [toModelInput] letterboxes a photo of any size into the model's square input: scaled so
 * the longer side is S (Pillow's bicubic resampling, ported with its fixed-point
 * arithmetic), centred (the extra pixel of an odd border goes to the bottom / right), the
 * border filled by reflection without repeating the edge (numpy "reflect"; "edge" when a
 * border is not thinner than the photo), then x = pixel / 127.5 - 1 as float32 NCHW RGB.
 * [fromModelOutput] crops the border off, pixel = rint((y + 1) * 127.5) clipped to 0..255,
 * and resizes back to the photo's size with the same filter.
 */

/** A packed 8-bit RGB image: `rgb[(y * width + x) * 3 + c]`. */
class RgbImage(val width: Int, val height: Int, val rgb: ByteArray) {
    init {
        if (width <= 0 || height <= 0) throw InvalidImageException("image is empty (${width}x$height)")
        if (rgb.size != width * height * 3) {
            throw InvalidImageException("image data has ${rgb.size} bytes, expected ${width * height * 3} (RGB, ${width}x$height)")
        }
    }

    /** Opaque ARGB ints (the layout of Android's Bitmap.setPixels). */
    fun toArgb(out: IntArray = IntArray(width * height)): IntArray {
        for (i in 0 until width * height) {
            val r = rgb[i * 3].toInt() and 0xFF
            val g = rgb[i * 3 + 1].toInt() and 0xFF
            val b = rgb[i * 3 + 2].toInt() and 0xFF
            out[i] = (0xFF shl 24) or (r shl 16) or (g shl 8) or b
        }
        return out
    }

    companion object {
        /** From ARGB ints (Android's Bitmap.getPixels); alpha is dropped. */
        fun fromArgb(pixels: IntArray, width: Int, height: Int): RgbImage {
            if (pixels.size != width * height) throw InvalidImageException("${pixels.size} pixels, expected ${width * height}")
            val rgb = ByteArray(width * height * 3)
            for (i in pixels.indices) {
                val p = pixels[i]
                rgb[i * 3] = (p ushr 16).toByte()
                rgb[i * 3 + 1] = (p ushr 8).toByte()
                rgb[i * 3 + 2] = p.toByte()
            }
            return RgbImage(width, height, rgb)
        }
    }
}

/** Where the photo sits inside the model's square input (runtime/imaging.py `Placement`). */
data class Placement(
    val height: Int,
    val width: Int,
    val top: Int,
    val left: Int,
    val innerHeight: Int,
    val innerWidth: Int,
    val size: Int,
) {
    /** numpy.pad's mode: "reflect" when every border is thinner than the photo, else "edge". */
    val mode: String
        get() = if (max(top, size - innerHeight - top) < innerHeight && max(left, size - innerWidth - left) < innerWidth) "reflect" else "edge"

    companion object {
        /** The letterbox geometry of a [width] x [height] photo in an S = [size] square. */
        fun of(width: Int, height: Int, size: Int): Placement {
            if (width <= 0 || height <= 0) throw InvalidImageException("image is empty (${width}x$height)")
            val scale = size.toDouble() / max(height, width)
            // Python's round(): halves go to the even neighbour (Math.rint)
            val ih = max(1, Math.rint(height * scale).toInt())
            val iw = max(1, Math.rint(width * scale).toInt())
            return Placement(height, width, (size - ih) / 2, (size - iw) / 2, ih, iw, size)
        }
    }
}

class ModelInput(val tensor: FloatArray, val placement: Placement)

object Imaging {

    /**
     * An RGB image -> (1, 3, size, size) float32 NCHW in [-1, 1] and its placement. [out]
     * (3 * size * size floats) is reused when given, so a camera loop allocates nothing.
     */
    fun toModelInput(image: RgbImage, size: Int, out: FloatArray? = null): ModelInput {
        val p = Placement.of(image.width, image.height, size)
        val ih = p.innerHeight
        val iw = p.innerWidth
        val rgb = if (ih != image.height || iw != image.width) {
            Resample.bicubic(image.rgb, image.width, image.height, iw, ih)
        } else {
            image.rgb
        }
        val reflect = p.mode == "reflect"
        val plane = size * size
        val tensor = out ?: FloatArray(3 * plane)
        if (tensor.size != 3 * plane) throw InvalidImageException("output buffer has ${tensor.size} floats, expected ${3 * plane}")
        val cols = IntArray(size) { x -> index(x - p.left, iw, reflect) }
        for (y in 0 until size) {
            val row = index(y - p.top, ih, reflect) * iw
            for (x in 0 until size) {
                val i = (row + cols[x]) * 3
                val o = y * size + x
                for (c in 0 until 3) {
                    tensor[c * plane + o] = NORMALIZE[rgb[i + c].toInt() and 0xFF]
                }
            }
        }
        return ModelInput(tensor, p)
    }

    /** (1, 3, S, S) float32 in [-1, 1] -> the RGB image of the photo's size. */
    fun fromModelOutput(tensor: FloatArray, p: Placement): RgbImage {
        val size = p.size
        val plane = size * size
        if (tensor.size != 3 * plane) throw InvalidImageException("model output has ${tensor.size} floats, expected ${3 * plane}")
        val ih = p.innerHeight
        val iw = p.innerWidth
        val rgb = ByteArray(ih * iw * 3)
        for (y in 0 until ih) {
            for (x in 0 until iw) {
                val src = (p.top + y) * size + p.left + x
                val o = (y * iw + x) * 3
                for (c in 0 until 3) {
                    // float32 like numpy: rint((y + 1.0) * 127.5), clipped to 0..255
                    val v = Math.rint(((tensor[c * plane + src] + 1.0f) * 127.5f).toDouble())
                    rgb[o + c] = (if (v.isNaN() || v < 0.0) 0 else if (v > 255.0) 255 else v.toInt()).toByte()
                }
            }
        }
        if (ih == p.height && iw == p.width) return RgbImage(iw, ih, rgb)
        return RgbImage(p.width, p.height, Resample.bicubic(rgb, iw, ih, p.width, p.height))
    }

    /** PSNR in dB (RGB, peak 255) between two images of the same size; +Infinity when identical. */
    fun psnr(a: RgbImage, b: RgbImage): Double {
        if (a.width != b.width || a.height != b.height) {
            throw InvalidImageException("size mismatch: ${a.width}x${a.height} vs ${b.width}x${b.height}")
        }
        var sum = 0.0
        for (i in a.rgb.indices) {
            val d = (a.rgb[i].toInt() and 0xFF) - (b.rgb[i].toInt() and 0xFF)
            sum += (d * d).toDouble()
        }
        val mse = sum / a.rgb.size
        return if (mse == 0.0) Double.POSITIVE_INFINITY else 10.0 * log10(255.0 * 255.0 / mse)
    }

    /** float32 like numpy: (pixel as float32) / 127.5 - 1.0 */
    private val NORMALIZE = FloatArray(256) { it.toFloat() / 127.5f - 1.0f }

    private fun index(i: Int, n: Int, reflect: Boolean): Int = if (reflect) {
        // numpy.pad(mode="reflect") for a border thinner than n: mirror without repeating the edge
        if (i < 0) -i else if (i >= n) 2 * (n - 1) - i else i
    } else {
        if (i < 0) 0 else if (i >= n) n - 1 else i
    }
}

/**
 * Pillow's ImagingResample (src/libImaging/Resample.c), bicubic (a = -0.5), 8 bits per
 * channel: two separable passes with 22-bit fixed-point coefficients, each rounded to 8 bits.
 * The pass order is Pillow 13's (vertical first when the height shrinks by more than twice as
 * many pixels as the width), as in web_demo/lib/imaging.js.
 */
object Resample {
    private const val PRECISION_BITS = 32 - 8 - 2
    private const val ROUNDING = 1 shl (PRECISION_BITS - 1)
    private const val FIXED_ONE = 1 shl PRECISION_BITS

    private class Coefficients(val ksize: Int, val bounds: IntArray, val kk: IntArray)

    private fun filter(x0: Double): Double {
        val a = -0.5
        val x = if (x0 < 0.0) -x0 else x0
        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a
        return 0.0
    }

    private fun coefficients(inSize: Int, outSize: Int): Coefficients {
        val scale = inSize.toDouble() / outSize
        val filterscale = if (scale < 1.0) 1.0 else scale
        val support = 2.0 * filterscale
        val ksize = ceil(support).toInt() * 2 + 1
        val bounds = IntArray(outSize * 2)
        val kk = IntArray(outSize * ksize)
        val k = DoubleArray(ksize)
        val ss = 1.0 / filterscale
        for (xx in 0 until outSize) {
            val center = (xx + 0.5) * scale
            var ww = 0.0
            // C's (int) cast truncates toward zero, as Kotlin's toInt()
            var xmin = (center - support + 0.5).toInt()
            if (xmin < 0) xmin = 0
            var xmax = (center + support + 0.5).toInt()
            if (xmax > inSize) xmax = inSize
            xmax -= xmin
            for (x in 0 until xmax) {
                val w = filter((x + xmin - center + 0.5) * ss)
                k[x] = w
                ww += w
            }
            for (x in 0 until ksize) {
                var w = if (x < xmax) k[x] else 0.0
                if (x < xmax && ww != 0.0) w /= ww
                kk[xx * ksize + x] = if (w < 0) (-0.5 + w * FIXED_ONE).toInt() else (0.5 + w * FIXED_ONE).toInt()
            }
            bounds[xx * 2] = xmin
            bounds[xx * 2 + 1] = xmax
        }
        return Coefficients(ksize, bounds, kk)
    }

    private fun clip8(ss: Int): Byte {
        val v = ss shr PRECISION_BITS
        return (if (v < 0) 0 else if (v > 255) 255 else v).toByte()
    }

    /**
     * One pass of the separable resize over packed RGB bytes (srcW pixels a row): an image of
     * outW x rows whose pixel (xx, yy) sums the taps of one coefficient row along one axis,
     * rounded to 8 bits. Horizontal: coefficient row xx, taps along source row yy + rowOffset;
     * vertical (rowOffset 0, outW = srcW): coefficient row yy, taps down source column xx.
     */
    private fun resamplePass(
        src: ByteArray, srcW: Int, outW: Int, rows: Int, rowOffset: Int, horizontal: Boolean, c: Coefficients
    ): ByteArray {
        val out = ByteArray(outW * rows * 3)
        val tapStride = if (horizontal) 1 else srcW
        for (yy in 0 until rows) {
            for (xx in 0 until outW) {
                val j = if (horizontal) xx else yy
                val first = c.bounds[j * 2]
                val taps = c.bounds[j * 2 + 1]
                val kb = j * c.ksize
                val base = (if (horizontal) (yy + rowOffset) * srcW else xx) + first * tapStride
                var s0 = ROUNDING
                var s1 = ROUNDING
                var s2 = ROUNDING
                for (t in 0 until taps) {
                    val w = c.kk[kb + t]
                    val i = (base + t * tapStride) * 3
                    s0 += (src[i].toInt() and 0xFF) * w
                    s1 += (src[i + 1].toInt() and 0xFF) * w
                    s2 += (src[i + 2].toInt() and 0xFF) * w
                }
                val o = (yy * outW + xx) * 3
                out[o] = clip8(s0)
                out[o + 1] = clip8(s1)
                out[o + 2] = clip8(s2)
            }
        }
        return out
    }

    /** Pillow's `Image.resize((outW, outH), Image.Resampling.BICUBIC)` of packed RGB bytes. */
    fun bicubic(rgb: ByteArray, width: Int, height: Int, outW: Int, outH: Int): ByteArray {
        if (outW == width && outH == height) return rgb.copyOf()
        val needH = outW != width
        val needV = outH != height
        val dh = height - outH
        val horizontalFirst = !(dh > 0 && dh > (width - outW) * 2)
        val vert = if (needV || (needH && horizontalFirst)) coefficients(height, outH) else null
        val horiz = if (needH) coefficients(width, outW) else null
        if (horizontalFirst) {
            var src = rgb
            var srcW = width
            if (needH) {
                // only the rows the vertical pass reads
                val v = vert!!
                val yFirst = v.bounds[0]
                val yLast = v.bounds[outH * 2 - 2] + v.bounds[outH * 2 - 1]
                for (i in 0 until outH) v.bounds[i * 2] -= yFirst
                src = resamplePass(rgb, width, outW, yLast - yFirst, yFirst, true, horiz!!)
                srcW = outW
            }
            return if (needV) resamplePass(src, srcW, srcW, outH, 0, false, vert!!) else src
        }
        val src = if (needV) resamplePass(rgb, width, width, outH, 0, false, vert!!) else rgb
        return if (needH) resamplePass(src, width, outW, outH, 0, true, horiz!!) else src
    }
}
