package dev.pocketgan.demo.core

import java.nio.ByteBuffer
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Test

class FramesTest {
    /** A 3x2 RGBA frame with 2 bytes of row padding; pixel (x, y) has red = 10 * y + x. */
    private fun frame(): ByteBuffer {
        val stride = 3 * 4 + 2
        val buffer = ByteBuffer.allocate(stride * 2)
        for (y in 0 until 2) for (x in 0 until 3) {
            val o = y * stride + x * 4
            buffer.put(o, (10 * y + x).toByte()).put(o + 1, 100).put(o + 2, 50).put(o + 3, -1)
        }
        return buffer
    }

    private fun reds(image: RgbImage) = IntArray(image.width * image.height) { image.rgb[it * 3].toInt() }

    @Test
    fun dropsAlphaAndRowPadding() {
        val image = Frames.rgbaToRgb(frame(), 3, 2, 14)
        assertEquals(3, image.width)
        assertEquals(2, image.height)
        assertArrayEquals(intArrayOf(0, 1, 2, 10, 11, 12), reds(image))
        assertEquals(100, image.rgb[1].toInt())
        assertEquals(50, image.rgb[2].toInt())
    }

    @Test
    fun rotatesClockwise() {
        // 90: the left column, bottom to top, becomes the top row
        val r90 = Frames.rgbaToRgb(frame(), 3, 2, 14, 90)
        assertEquals(2, r90.width)
        assertEquals(3, r90.height)
        assertArrayEquals(intArrayOf(10, 0, 11, 1, 12, 2), reds(r90))
        assertArrayEquals(intArrayOf(12, 11, 10, 2, 1, 0), reds(Frames.rgbaToRgb(frame(), 3, 2, 14, 180)))
        assertArrayEquals(intArrayOf(2, 12, 1, 11, 0, 10), reds(Frames.rgbaToRgb(frame(), 3, 2, 14, 270)))
    }

    @Test
    fun fpsMeter() {
        var now = 1L
        val meter = FpsMeter(smoothing = 0.5) { now }
        assertEquals(0.0, meter.tick(), 0.0)
        now += 50_000_000
        assertEquals(20.0, meter.tick(), 1e-9)
        now += 100_000_000
        assertEquals(1e9 / 75_000_000, meter.tick(), 1e-9)
    }
}
