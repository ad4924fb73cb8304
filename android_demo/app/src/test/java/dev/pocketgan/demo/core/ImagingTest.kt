package dev.pocketgan.demo.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test

/** Letterboxing against tests/fixtures/letterbox_cases.json (written from pocketgan.runtime.imaging). */
class ImagingTest {
    private val cases = Fixtures.json("letterbox_cases.json")

    @Suppress("UNCHECKED_CAST")
    private fun rows(key: String) = cases[key] as List<Map<String, Any?>>

    private fun Map<String, Any?>.int(key: String) = (this[key] as Long).toInt()

    @Test
    fun geometryMatchesThePythonRuntime() {
        val geometry = rows("geometry")
        assertTrue(geometry.size >= 20)
        for (g in geometry) {
            val p = Placement.of(g.int("width"), g.int("height"), g.int("size"))
            val where = "${g["width"]}x${g["height"]} in ${g["size"]}"
            assertEquals(where, g.int("inner_width"), p.innerWidth)
            assertEquals(where, g.int("inner_height"), p.innerHeight)
            assertEquals(where, g.int("top"), p.top)
            assertEquals(where, g.int("left"), p.left)
            assertEquals(where, g["mode"], p.mode)
        }
    }

    @Test
    fun pixelsMatchThePythonRuntimeBitForBit() {
        val pixels = rows("pixels")
        assertTrue(pixels.size >= 10)
        for (case in pixels) {
            val w = case.int("width")
            val h = case.int("height")
            val s = case.int("size")
            val where = "${w}x$h in $s"
            val image = Fixtures.pattern(w, h)
            assertEquals(where, case["input_sha256"], Sha256.hex(image.rgb))
            val x = Imaging.toModelInput(image, s)
            assertEquals(where, case["tensor_sha256"], Sha256.hex(Fixtures.floatBytes(x.tensor)))
            val back = Imaging.fromModelOutput(x.tensor, x.placement)
            assertEquals(where, w, back.width)
            assertEquals(where, h, back.height)
            assertEquals(where, case["output_sha256"], Sha256.hex(back.rgb))
        }
    }

    @Test
    fun reusesTheCallersBuffer() {
        val buffer = FloatArray(3 * 32 * 32)
        val x = Imaging.toModelInput(Fixtures.pattern(40, 30), 32, buffer)
        assertTrue(x.tensor === buffer)
        assertThrows(InvalidImageException::class.java) { Imaging.toModelInput(Fixtures.pattern(4, 3), 32, FloatArray(5)) }
    }

    @Test
    fun normalisesToMinusOneOne() {
        val white = RgbImage(2, 2, ByteArray(12) { -1 })
        val x = Imaging.toModelInput(white, 2).tensor
        assertArrayEquals(FloatArray(12) { 1f }, x, 0f)
        val black = Imaging.toModelInput(RgbImage(2, 2, ByteArray(12)), 2).tensor
        assertArrayEquals(FloatArray(12) { -1f }, black, 0f)
        // out-of-range model outputs are clipped
        val p = Placement.of(1, 1, 1)
        assertArrayEquals(byteArrayOf(-1, 0, -1), Imaging.fromModelOutput(floatArrayOf(5f, -3f, Float.POSITIVE_INFINITY), p).rgb)
    }

    @Test
    fun argbRoundTrip() {
        val image = Fixtures.pattern(5, 3)
        val argb = image.toArgb()
        assertTrue(argb.all { (it ushr 24) == 0xFF })
        assertArrayEquals(image.rgb, RgbImage.fromArgb(argb, 5, 3).rgb)
    }

    @Test
    fun refusesEmptyOrMisSizedImages() {
        assertThrows(InvalidImageException::class.java) { RgbImage(0, 3, ByteArray(0)) }
        assertThrows(InvalidImageException::class.java) { RgbImage(2, 2, ByteArray(11)) }
        assertThrows(InvalidImageException::class.java) { Imaging.fromModelOutput(FloatArray(7), Placement.of(2, 2, 2)) }
    }

    @Test
    fun psnr() {
        val a = Fixtures.pattern(8, 8)
        assertEquals(Double.POSITIVE_INFINITY, Imaging.psnr(a, a), 0.0)
        val b = RgbImage(8, 8, a.rgb.copyOf().also { it[0] = (it[0] + 1).toByte() })
        // one level on one of 192 values: 10 log10(255^2 * 192)
        assertEquals(10 * kotlin.math.log10(255.0 * 255.0 * 192), Imaging.psnr(a, b), 1e-9)
    }
}
