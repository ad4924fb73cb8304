package dev.pocketgan.demo.core

import java.io.File
import org.junit.Assume

/**
 * Where the unit tests find their data. Gradle passes `pocketgan.fixtures` (the repository's
 * tests/fixtures, see app/build.gradle.kts); tests/test_mobile_demos.py passes it too, plus
 * `pocketgan.goldenBundle` (an exported bundle), `pocketgan.goldenOutputs` (the Python
 * runtime's output tensors for its golden input) and `pocketgan.benchSampleOut`.
 */
object Fixtures {
    val dir: File
        get() = File(System.getProperty("pocketgan.fixtures") ?: "../../tests/fixtures").also {
            check(it.isDirectory) { "fixtures folder $it not found: set -Dpocketgan.fixtures=<repo>/tests/fixtures" }
        }

    @Suppress("UNCHECKED_CAST")
    fun json(name: String): Map<String, Any?> = Json.parse(File(dir, name).readText()) as Map<String, Any?>

    fun text(name: String): String = File(dir, name).readText()

    /** A folder named by a system property, or the test is skipped (Gradle runs have none). */
    fun optionalDir(property: String): File {
        val path = System.getProperty(property)
        Assume.assumeTrue("-D$property not set (tests/test_mobile_demos.py sets it)", path != null)
        return File(path!!)
    }

    /** The synthetic photo of letterbox_cases.json's `pattern`. */
    fun pattern(width: Int, height: Int): RgbImage {
        val rgb = ByteArray(width * height * 3)
        for (y in 0 until height) for (x in 0 until width) for (c in 0 until 3) {
            rgb[(y * width + x) * 3 + c] = ((x * 37 + y * 91 + c * 53 + (x * y) % 29) % 256).toByte()
        }
        return RgbImage(width, height, rgb)
    }

    /** Little-endian float32 bytes, as numpy's `astype("<f4").tobytes()`. */
    fun floatBytes(values: FloatArray): ByteArray {
        val buffer = java.nio.ByteBuffer.allocate(values.size * 4).order(java.nio.ByteOrder.LITTLE_ENDIAN)
        buffer.asFloatBuffer().put(values)
        return buffer.array()
    }

    fun readFloats(file: File): FloatArray {
        val buffer = java.nio.ByteBuffer.wrap(file.readBytes()).order(java.nio.ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
        return FloatArray(buffer.remaining()).also { buffer.get(it) }
    }
}
