package dev.pocketgan.demo.core

import java.io.File
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Test

class BenchmarkTest {
    @Test
    fun statsLikePythonsStatisticsModule() {
        // statistics.median / quantiles(n=4, method="inclusive") / fmean of [1, 2, 3, 4, 10]
        val s = Benchmark.stats(listOf(10.0, 2.0, 4.0, 1.0, 3.0))
        assertEquals(3.0, s["median"] as Double, 0.0)
        assertEquals(2.0, s["q1"] as Double, 0.0)
        assertEquals(4.0, s["q3"] as Double, 0.0)
        assertEquals(2.0, s["iqr"] as Double, 0.0)
        assertEquals(4.0, s["mean"] as Double, 0.0)
        assertEquals(5, s["rounds"])
        // [1, 2, 3, 4]: median 2.5, quartiles 1.75 and 3.25
        val t = Benchmark.stats(listOf(4.0, 3.0, 2.0, 1.0))
        assertEquals(2.5, t["median"] as Double, 1e-12)
        assertEquals(1.75, t["q1"] as Double, 1e-12)
        assertEquals(3.25, t["q3"] as Double, 1e-12)
        assertEquals(0.5, Benchmark.spread(listOf(2.0, 3.0)), 1e-12)
    }

    /** A fake engine on a fake clock: every call takes 5 ms, a switch 0.01 ms, an open 40 ms. */
    private class FakeTarget(override val concepts: List<String>, val clock: LongArray) : BenchTarget {
        var active = concepts[0]
        val calls = HashMap<String, Int>()

        override fun setConcept(concept: String) {
            require(concept in concepts)
            active = concept
            clock[0] += 10_000
        }

        override fun run(input: FloatArray): FloatArray {
            calls[active] = (calls[active] ?: 0) + 1
            clock[0] += 5_000_000
            return input
        }

        override fun close() {}
    }

    @Test
    fun measuresEveryConceptAndWritesTheSharedSchema() {
        val manifest = BundleManifest.parse(Fixtures.text("app_manifests/android.json"))
        val clock = longArrayOf(0)
        var last: FakeTarget? = null
        val settings = BenchSettings(rounds = 4, warmup = 1, repeats = 2, openRounds = 2, swapRounds = 20)
        val rec = Benchmark.measure(
            manifest, ConceptMode.SEPARATE, settings,
            open = { clock[0] += 40_000_000; FakeTarget(manifest.conceptNames, clock).also { last = it } },
            artifactBytes = 1234, rss = { 1L shl 20 }, clock = { clock[0] }, parityPsnrDb = 90.0,
        )
        assertEquals("ok", rec["status"])
        assertEquals("pocketgan/executorch/fp32/separate/${manifest.imageSize}", rec["id"])
        @Suppress("UNCHECKED_CAST")
        val latency = rec["latency_ms"] as Map<String, Any?>
        assertEquals(5.0, latency["median"] as Double, 1e-9)
        assertEquals(8, latency["rounds"])
        assertEquals(true, latency["stable"])
        assertEquals(40.0, (rec["open_ms"] as Map<*, *>)["median"] as Double, 1e-9)
        assertEquals(0.01, (rec["set_concept_ms"] as Map<*, *>)["median"] as Double, 1e-9)
        assertEquals(2 * manifest.macs!!, rec["flops"])
        assertTrue(manifest.conceptNames.all { (last!!.calls[it] ?: 0) >= settings.rounds })
        val extra = rec["extra"] as Map<*, *>
        assertEquals(manifest.conceptNames.toSet(), (extra["per_concept_median_ms"] as Map<*, *>).keys)

        val machine = linkedMapOf<String, Any?>(
            "cpu_model" to "test", "logical_cpus" to 2, "threads" to null, "os" to "JVM", "device" to "unit test",
            "versions" to mapOf("pocketgan" to manifest.pocketganVersion), "date" to "2026-01-01T00:00:00Z",
        )
        val failed = Benchmark.measure(manifest, ConceptMode.MERGED, settings, open = { error("no merged program") })
        assertEquals("failed", failed["status"])
        assertNull(failed["latency_ms"])
        val doc = Benchmark.document("android", machine, listOf(rec, failed), settings, "2026-01-01T00:00:00Z", "unit test", manifest)
        assertEquals(1, (doc["stability"] as Map<*, *>)["checked"])
        val text = Json.write(doc, indent = 1)
        val parsed = Json.parse(text) as Map<*, *>
        assertEquals("pocketgan-bench", parsed["schema"])
        assertEquals(2, (parsed["records"] as List<*>).size)
        System.getProperty("pocketgan.benchSampleOut")?.let { File(it).writeText(text) }
    }

    @Test
    fun readsPeakMemoryFromProcStatus() {
        val status = File.createTempFile("status", ".txt")
        status.writeText("Name:\tjava\nVmHWM:\t  123456 kB\nVmRSS:\t 1000 kB\n")
        assertEquals(123456L * 1024, Benchmark.procStatusBytes("VmHWM", status))
        assertEquals(1000L * 1024, Benchmark.procStatusBytes("VmRSS", status))
        assertNull(Benchmark.procStatusBytes("VmHWM", File("/no/such/file")))
    }
}
