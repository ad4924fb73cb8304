package dev.pocketgan.demo.core

import java.nio.ByteBuffer

/** Camera frames -> [RgbImage], and the frame-rate meter of the overlay (plain Kotlin). */
object Frames {

    /**
     * An RGBA_8888 plane (CameraX `ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888`: 4 bytes per
     * pixel, rows [rowStride] bytes apart) -> upright RGB, rotated clockwise by
     * [rotationDegrees] (the frame's `imageInfo.rotationDegrees`: 0, 90, 180 or 270).
     */
    fun rgbaToRgb(plane: ByteBuffer, width: Int, height: Int, rowStride: Int, rotationDegrees: Int = 0): RgbImage {
        require(rotationDegrees in setOf(0, 90, 180, 270)) { "rotation must be 0, 90, 180 or 270, got $rotationDegrees" }
        val outW = if (rotationDegrees % 180 == 0) width else height
        val outH = if (rotationDegrees % 180 == 0) height else width
        val rgb = ByteArray(outW * outH * 3)
        val base = plane.position()
        for (y in 0 until height) {
            val row = base + y * rowStride
            for (x in 0 until width) {
                // where source pixel (x, y) lands after a clockwise rotation
                val (dx, dy) = when (rotationDegrees) {
                    90 -> (height - 1 - y) to x
                    180 -> (width - 1 - x) to (height - 1 - y)
                    270 -> y to (width - 1 - x)
                    else -> x to y
                }
                val s = row + x * 4
                val o = (dy * outW + dx) * 3
                rgb[o] = plane.get(s)
                rgb[o + 1] = plane.get(s + 1)
                rgb[o + 2] = plane.get(s + 2)
            }
        }
        return RgbImage(outW, outH, rgb)
    }
}

/** Frames per second over the last frames (exponential moving average of the intervals). */
class FpsMeter(private val smoothing: Double = 0.1, private val clock: () -> Long = System::nanoTime) {
    private var last = 0L
    private var meanIntervalNs = 0.0

    /** Call once per displayed frame; returns the current rate. */
    fun tick(): Double {
        val now = clock()
        if (last != 0L) {
            val dt = (now - last).toDouble()
            meanIntervalNs = if (meanIntervalNs == 0.0) dt else meanIntervalNs + smoothing * (dt - meanIntervalNs)
        }
        last = now
        return fps
    }

    val fps: Double get() = if (meanIntervalNs > 0.0) 1e9 / meanIntervalNs else 0.0
}
