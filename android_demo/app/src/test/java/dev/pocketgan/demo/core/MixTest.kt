package dev.pocketgan.demo.core

import java.io.File
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test

/**
 * Strength and blending: the calibration table agrees with the Python runtime
 * (tests/fixtures/strength_cases.json), mixes are validated the same way, and the golden
 * vectors of strengths 0 / 0.5 and a blend pass with the Python runtime's outputs standing in
 * for the ExecuTorch mix method.
 */
class MixTest {
    @Test
    fun strengthWeightsMatchThePythonRuntime() {
        @Suppress("UNCHECKED_CAST")
        val cases = Fixtures.json("strength_cases.json")["cases"] as List<Map<String, Any?>>
        assertTrue(cases.size >= 10)
        for (c in cases) {
            val curve = (c["curve"] as List<*>?)?.map { it.asNumber("curve") }
            val got = ConceptMix.strengthWeight(curve, c["strength"].asNumber("strength"))
            assertEquals("$c", c["weight"].asNumber("weight"), got, 1e-9)
        }
    }

    @Test
    fun mixesOfAnExportAreCheckedAndBecomeTheMethodsWeights() {
        val bundle = VerifiedBundle.open(DirectorySource(Fixtures.optionalDir("pocketgan.goldenBundle")))
        val m = bundle.manifest
        val method = m.requireExecuTorch().mix!!
        assertEquals(m.conceptNames, method.concepts)
        val (a, b) = m.conceptNames
        assertArrayEquals(floatArrayOf(0.6f, 0.4f, 0f), ConceptMix.weightVector(m, ConceptMix.crossFade(m, a, b, 0.4)), 1e-6f)
        assertEquals(mapOf(a to 1.0), ConceptMix.crossFade(m, a, a, 0.3))
        assertThrows(MixException::class.java) { ConceptMix.strength(m, a, 1.6) }
        assertThrows(MixException::class.java) { ConceptMix.weightVector(m, mapOf(a to 1.0, b to 0.6)) }
        assertThrows(MixException::class.java) { ConceptMix.crossFade(m, a, b, 1.2) }
        assertThrows(UnknownConceptException::class.java) { ConceptMix.weightVector(m, mapOf("nope" to 0.5)) }
    }

    @Test
    fun goldenMixesPassWithTheReferenceOutputs() {
        val bundle = VerifiedBundle.open(DirectorySource(Fixtures.optionalDir("pocketgan.goldenBundle")))
        val outputs = Fixtures.optionalDir("pocketgan.goldenOutputs")
        val byWeights = bundle.manifest.goldenMixes.mapIndexed { i, g ->
            ConceptMix.weightVector(bundle.manifest, g.weights).toList() to Fixtures.readFloats(File(outputs, "mix-$i.f32"))
        }.toMap()
        val results = GoldenCheck.runMixes(bundle, thresholdDb = 35.0) { w, _ -> byWeights.getValue(w.toList()) }
        assertEquals(3, results.size)
        for (r in results) assertTrue(GoldenCheck.summary(results), r.passed && r.psnrDb > 50.0)
        // a model that ignores the weights fails
        val wrong = GoldenCheck.runMixes(bundle, thresholdDb = 35.0) { _, x -> FloatArray(x.size) { -x[it] } }
        assertTrue(GoldenCheck.summary(wrong), wrong.none { it.passed })
    }
}
