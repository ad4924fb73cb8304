package dev.pocketgan.demo.core

import java.io.File
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Test

/**
 * The golden vectors of a real export, with the Python runtime's model outputs standing in
 * for the ExecuTorch method (no ExecuTorch on a desktop JVM): everything around the model
 * (PNG decoding, letterbox, crop back, PSNR, thresholds) is the app's own code.
 */
class GoldenTest {
    @Test
    fun goldenInputLetterboxesWithoutResamplingBitForBit() {
        val bundle = VerifiedBundle.open(DirectorySource(Fixtures.optionalDir("pocketgan.goldenBundle")))
        val outputs = Fixtures.optionalDir("pocketgan.goldenOutputs")
        val golden = bundle.manifest.concepts.first().golden!!
        val photo = Png.decode(bundle.read(golden.input))
        val s = bundle.manifest.imageSize
        assertEquals(s, photo.width)
        assertEquals(3 * s / 8, photo.height)
        val x = Imaging.toModelInput(photo, s)
        assertEquals(photo.width, x.placement.innerWidth)
        assertEquals(photo.height, x.placement.innerHeight)
        assertArrayEquals(Fixtures.readFloats(File(outputs, "golden_input.f32")), x.tensor, 0f)
    }

    @Test
    fun everyConceptPassesWithTheReferenceOutputs() {
        val bundle = VerifiedBundle.open(DirectorySource(Fixtures.optionalDir("pocketgan.goldenBundle")))
        val outputs = Fixtures.optionalDir("pocketgan.goldenOutputs")
        val results = GoldenCheck.run(bundle, thresholdDb = 35.0) { concept, _ -> Fixtures.readFloats(File(outputs, "$concept.f32")) }
        assertEquals(bundle.manifest.conceptNames, results.map { it.concept })
        for (r in results) assertTrue(GoldenCheck.summary(results), r.passed && r.psnrDb > 50.0)
        assertTrue(GoldenCheck.summary(results).startsWith("PASS"))
    }

    @Test
    fun aWrongModelFails() {
        val bundle = VerifiedBundle.open(DirectorySource(Fixtures.optionalDir("pocketgan.goldenBundle")))
        val results = GoldenCheck.run(bundle, thresholdDb = 35.0) { _, x -> FloatArray(x.size) { -x[it] } }
        assertFalse(results.isEmpty())
        assertTrue(results.none { it.passed })
        assertTrue(GoldenCheck.summary(results).contains("FAIL"))
    }
}
