package dev.pocketgan.demo.core

import java.io.ByteArrayOutputStream
import java.util.zip.DataFormatException
import java.util.zip.Inflater

/**
 * A PNG decoder for the golden vectors (8-bit, non-interlaced greyscale / RGB / RGBA), in
 * plain Kotlin on java.util.zip so the golden check gives the same bytes on a phone and in
 * a JVM unit test. Android's BitmapFactory would do on the phone, but it may apply a colour
 * profile and is not available in unit tests.
 */
object Png {
    private val SIGNATURE = byteArrayOf(-119, 80, 78, 71, 13, 10, 26, 10)

    fun decode(data: ByteArray): RgbImage {
        if (data.size < 8 || !data.copyOfRange(0, 8).contentEquals(SIGNATURE)) throw InvalidImageException("not a PNG file")
        var pos = 8
        var width = 0
        var height = 0
        var colorType = -1
        val idat = ByteArrayOutputStream()
        while (pos + 8 <= data.size) {
            val length = u32(data, pos)
            val type = String(data, pos + 4, 4, Charsets.US_ASCII)
            val body = pos + 8
            if (length < 0 || body + length + 4 > data.size) throw InvalidImageException("truncated PNG chunk $type")
            when (type) {
                "IHDR" -> {
                    width = u32(data, body)
                    height = u32(data, body + 4)
                    val bitDepth = data[body + 8].toInt()
                    colorType = data[body + 9].toInt()
                    val interlace = data[body + 12].toInt()
                    if (bitDepth != 8) throw InvalidImageException("PNG bit depth $bitDepth is not supported (8)")
                    if (colorType !in setOf(0, 2, 4, 6)) throw InvalidImageException("PNG colour type $colorType is not supported")
                    if (interlace != 0) throw InvalidImageException("interlaced PNGs are not supported")
                }
                "IDAT" -> idat.write(data, body, length)
                "IEND" -> break
            }
            pos = body + length + 4 // + CRC
        }
        if (width <= 0 || height <= 0 || colorType < 0) throw InvalidImageException("PNG has no IHDR")
        val channels = when (colorType) { 0 -> 1; 4 -> 2; 2 -> 3; else -> 4 }
        val stride = width * channels
        val raw = inflate(idat.toByteArray(), (stride + 1) * height)
        val pixels = unfilter(raw, stride, height, channels)
        val rgb = ByteArray(width * height * 3)
        for (i in 0 until width * height) {
            val s = i * channels
            if (channels <= 2) {
                rgb[i * 3] = pixels[s]; rgb[i * 3 + 1] = pixels[s]; rgb[i * 3 + 2] = pixels[s]
            } else {
                rgb[i * 3] = pixels[s]; rgb[i * 3 + 1] = pixels[s + 1]; rgb[i * 3 + 2] = pixels[s + 2]
            }
        }
        return RgbImage(width, height, rgb)
    }

    private fun u32(b: ByteArray, i: Int): Int =
        ((b[i].toInt() and 0xFF) shl 24) or ((b[i + 1].toInt() and 0xFF) shl 16) or
            ((b[i + 2].toInt() and 0xFF) shl 8) or (b[i + 3].toInt() and 0xFF)

    private fun inflate(data: ByteArray, expected: Int): ByteArray {
        val inflater = Inflater()
        try {
            inflater.setInput(data)
            val out = ByteArray(expected)
            var n = 0
            while (n < expected) {
                val got = inflater.inflate(out, n, expected - n)
                if (got == 0 && (inflater.finished() || inflater.needsInput() || inflater.needsDictionary())) break
                n += got
            }
            if (n != expected) throw InvalidImageException("PNG image data is truncated ($n of $expected bytes)")
            return out
        } catch (e: DataFormatException) {
            throw InvalidImageException("PNG image data is corrupt: ${e.message}")
        } finally {
            inflater.end()
        }
    }

    private fun unfilter(raw: ByteArray, stride: Int, height: Int, bpp: Int): ByteArray {
        val out = ByteArray(stride * height)
        for (y in 0 until height) {
            val filter = raw[y * (stride + 1)].toInt()
            val src = y * (stride + 1) + 1
            val dst = y * stride
            val prev = dst - stride
            for (x in 0 until stride) {
                val r = raw[src + x].toInt() and 0xFF
                val a = if (x >= bpp) out[dst + x - bpp].toInt() and 0xFF else 0
                val b = if (y > 0) out[prev + x].toInt() and 0xFF else 0
                val c = if (y > 0 && x >= bpp) out[prev + x - bpp].toInt() and 0xFF else 0
                val v = when (filter) {
                    0 -> r
                    1 -> r + a
                    2 -> r + b
                    3 -> r + ((a + b) ushr 1)
                    4 -> r + paeth(a, b, c)
                    else -> throw InvalidImageException("bad PNG filter type $filter")
                }
                out[dst + x] = v.toByte()
            }
        }
        return out
    }

    private fun paeth(a: Int, b: Int, c: Int): Int {
        val p = a + b - c
        val pa = kotlin.math.abs(p - a)
        val pb = kotlin.math.abs(p - b)
        val pc = kotlin.math.abs(p - c)
        return if (pa <= pb && pa <= pc) a else if (pb <= pc) b else c
    }
}
