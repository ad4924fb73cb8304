package dev.pocketgan.demo.core

import java.io.File
import kotlin.math.floor

/**
 * The app's benchmark mode, in plain Kotlin: it times one concept mode of the engine (cold
 * open, every concept's method, the concept switch) and writes pocketgan's benchmark
 * schema (pocketgan/bench/schema.json, the same document `pocketgan bench` and the device
 * harnesses write), so `python -m pocketgan.bench.report` reads a phone run like any other.
 */

/** What the benchmark drives: one concept mode of the app's engine, opened and ready. */
interface BenchTarget : AutoCloseable {
    val concepts: List<String>

    /** Makes [concept] the active one (for ExecuTorch: picks another method name; nothing is loaded). */
    fun setConcept(concept: String)

    /** One model call of the active concept. */
    fun run(input: FloatArray): FloatArray
}

data class BenchSettings(
    val rounds: Int = 20,
    val warmup: Int = 3,
    val repeats: Int = 2,
    val openRounds: Int = 3,
    val swapRounds: Int = 2000,
    val tolerance: Double = 0.10,
    /** ExecuTorch threads, when the app pins them (null: the runtime's default) */
    val threads: Int? = null,
) {
    init {
        require(rounds >= 1 && repeats >= 1 && openRounds >= 1 && warmup >= 0 && swapRounds >= 10) { "bad benchmark settings $this" }
    }
}

object Benchmark {
    /** Median, quartiles (inclusive, as Python's statistics.quantiles), mean and extremes (ms). */
    fun stats(samples: List<Double>): MutableMap<String, Any?> {
        require(samples.isNotEmpty()) { "no samples" }
        val xs = samples.sorted()
        fun quantile(q: Double): Double {
            if (xs.size == 1) return xs[0]
            val pos = q * (xs.size - 1)
            val lo = floor(pos).toInt()
            val hi = minOf(lo + 1, xs.size - 1)
            return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)
        }
        val q1 = quantile(0.25)
        val q3 = quantile(0.75)
        return linkedMapOf(
            "median" to quantile(0.5), "iqr" to q3 - q1, "q1" to q1, "q3" to q3,
            "mean" to xs.sum() / xs.size, "min" to xs.first(), "max" to xs.last(), "rounds" to xs.size,
        )
    }

    /** (max - min) / min of repeated medians; 0 for one. */
    fun spread(medians: List<Double>): Double {
        if (medians.size < 2) return 0.0
        val lo = medians.min()
        return if (lo > 0) (medians.max() - lo) / lo else Double.POSITIVE_INFINITY
    }

    /** `latency_ms` of a record from each repeat's samples. */
    fun latency(passes: List<List<Double>>, warmup: Int, tolerance: Double): Map<String, Any?> {
        val entry = stats(passes.flatten())
        val medians = passes.map { stats(it)["median"] as Double }
        val sp = spread(medians)
        entry["warmup"] = warmup
        entry["repeat_medians"] = medians
        entry["spread"] = sp
        entry["stable"] = sp <= tolerance
        return entry
    }

    /** A record with every field the schema requires (null where not measured). */
    fun record(model: String, modelName: String, backend: String, precision: String, mode: String, size: Int): MutableMap<String, Any?> =
        linkedMapOf(
            "id" to "$model/$backend/$precision/$mode/$size", "model" to model, "model_name" to modelName,
            "backend" to backend, "precision" to precision, "concept_mode" to mode, "size" to size,
            "concept" to null, "concepts" to null, "status" to "ok", "error" to null,
            "latency_ms" to null, "open_ms" to null, "open_fresh_process_ms" to null, "set_concept_ms" to null,
            "peak_rss_bytes" to null, "baseline_rss_bytes" to null, "artifact_bytes" to null, "parity_psnr_db" to null,
            "flops" to null, "achieved_gops" to null, "gemm_peak_share" to null,
            "ratios" to linkedMapOf<String, Any?>(), "extra" to linkedMapOf<String, Any?>(), "notes" to mutableListOf<String>(),
        )

    /**
     * Times one concept mode. [open] opens the engine in that mode (checksums, program load,
     * every concept's method loaded), [rss] reads the process's peak resident memory.
     */
    fun measure(
        manifest: BundleManifest,
        mode: ConceptMode,
        settings: BenchSettings,
        open: () -> BenchTarget,
        artifactBytes: Long? = null,
        rss: () -> Long? = { null },
        clock: () -> Long = System::nanoTime,
        parityPsnrDb: Double? = null,
    ): Map<String, Any?> {
        val t = manifest.requireExecuTorch()
        val size = manifest.imageSize
        val rec = record("pocketgan", "pocketgan-${manifest.generatorSize}", "executorch", t.precision, mode.json, size)
        val baseline = rss()
        fun ms(t0: Long) = (clock() - t0) / 1e6
        try {
            // cold open: the app's whole open (manifest, checksums, Module.load, loadMethod of every concept)
            val opens = ArrayList<Double>()
            var target: BenchTarget? = null
            repeat(settings.openRounds) {
                target?.close()
                val t0 = clock()
                target = open()
                opens.add(ms(t0))
            }
            target!!.use { engine ->
                val concepts = engine.concepts
                val input = FloatArray(manifest.input.elementCount) { (it % 255) / 127.5f - 1f }

                // set_concept: the swap between loaded methods, timed in batches of 10
                val swaps = ArrayList<Double>()
                var i = 0
                repeat(settings.swapRounds / 10) {
                    val t0 = clock()
                    repeat(10) { engine.setConcept(concepts[i++ % concepts.size]) }
                    swaps.add(ms(t0) / 10)
                }

                // latency: the first concept, `repeats` passes of warmup + rounds
                val first = concepts[0]
                engine.setConcept(first)
                val passes = List(settings.repeats) {
                    repeat(settings.warmup) { engine.run(input) }
                    List(settings.rounds) {
                        val t0 = clock()
                        engine.run(input)
                        ms(t0)
                    }
                }
                // every concept's method, one pass each
                val perConcept = LinkedHashMap<String, Double>()
                for (c in concepts) {
                    engine.setConcept(c)
                    repeat(settings.warmup) { engine.run(input) }
                    perConcept[c] = stats(List(settings.rounds) { val t0 = clock(); engine.run(input); ms(t0) })["median"] as Double
                }
                // the first call after a switch to another concept (what a chip tap costs the next frame)
                val afterSwitch = ArrayList<Double>()
                if (concepts.size > 1) {
                    repeat(settings.rounds) { k ->
                        engine.setConcept(concepts[(k + 1) % concepts.size])
                        val t0 = clock()
                        engine.run(input)
                        afterSwitch.add(ms(t0))
                    }
                }

                val latency = latency(passes, settings.warmup, settings.tolerance)
                val median = latency["median"] as Double
                val openStats = stats(opens)
                val swapStats = stats(swaps)
                rec["concept"] = first
                rec["concepts"] = concepts.size
                rec["latency_ms"] = latency
                rec["open_ms"] = openStats
                rec["set_concept_ms"] = swapStats
                rec["peak_rss_bytes"] = rss()
                rec["baseline_rss_bytes"] = baseline
                rec["artifact_bytes"] = artifactBytes
                rec["parity_psnr_db"] = parityPsnrDb?.takeIf { !it.isInfinite() }
                val flops = manifest.macs?.let { 2 * it }
                rec["flops"] = flops
                if (flops != null && median > 0) rec["achieved_gops"] = flops / (median / 1e3) / 1e9
                rec["ratios"] = linkedMapOf<String, Any?>(
                    "set_concept_vs_open" to (swapStats["median"] as Double) / (openStats["median"] as Double),
                )
                val extra = linkedMapOf<String, Any?>(
                    "per_concept_median_ms" to perConcept,
                    "program" to manifest.programPath(mode).second,
                    "methods" to concepts.associateWith { manifest.methodName(it) },
                    "threads" to settings.threads,
                )
                if (afterSwitch.isNotEmpty()) extra["first_run_after_switch_ms"] = stats(afterSwitch)
                rec["extra"] = extra
                rec["notes"] = mutableListOf(
                    "measured in the Android demo app (android_demo, benchmark mode): org.pytorch.executorch.Module",
                    "cold open: the app's engine open (manifest, sha256 of the program, Module.load, loadMethod of every concept)",
                    "set_concept: switching the method name between loaded methods; first_run_after_switch_ms: the next call",
                    "peak RSS: the app process's VmHWM after this group (cumulative over the process)",
                )
            }
        } catch (e: Exception) {
            rec["status"] = "failed"
            rec["error"] = "${e.javaClass.simpleName}: ${e.message}"
        }
        return rec
    }

    /** The results document (schema_version 1) around [records]; derived fields the schema lets a reader fill stay empty. */
    fun document(
        source: String,
        machine: Map<String, Any?>,
        records: List<Map<String, Any?>>,
        settings: BenchSettings,
        created: String,
        command: String?,
        manifest: BundleManifest? = null,
    ): Map<String, Any?> {
        val measured = records.mapNotNull { r -> @Suppress("UNCHECKED_CAST") (r["latency_ms"] as? Map<String, Any?>)?.let { r to it } }
        val checked = measured.filter { (it.second["repeat_medians"] as List<*>).size >= 2 }
        val models = linkedMapOf<String, Any?>()
        if (manifest != null) {
            val flops = manifest.macs?.let { 2 * it }
            val entry = linkedMapOf<String, Any?>(
                "family" to "pocketgan",
                "parameters" to (manifest.raw["generator"] as? Map<*, *>)?.get("parameters"),
            )
            if (flops != null) {
                // 2 x the manifest's generator.macs (one forward pass at io.input.shape)
                entry["flops"] = linkedMapOf(manifest.imageSize.toString() to linkedMapOf("separate" to flops, "merged" to flops))
            }
            models["pocketgan-${manifest.generatorSize}"] = entry
        }
        return linkedMapOf(
            "schema" to "pocketgan-bench",
            "schema_version" to 1,
            "created" to created,
            "command" to command,
            "source" to source,
            "machine" to machine,
            "config" to linkedMapOf(
                "harness" to "android_demo (benchmark mode)", "rounds" to settings.rounds, "warmup" to settings.warmup,
                "repeats" to settings.repeats, "open_rounds" to settings.openRounds, "swap_rounds" to settings.swapRounds,
                "threads" to settings.threads,
            ),
            "gemm" to null,
            "models" to models,
            "records" to records,
            "stability" to linkedMapOf(
                "tolerance" to settings.tolerance,
                "repeats" to settings.repeats,
                "checked" to checked.size,
                "unstable" to checked.filter { (it.second["spread"] as Double) > settings.tolerance }.map { it.first["id"] },
            ),
            "claims" to emptyList<Any?>(),
        )
    }

    /** Peak and current resident memory from /proc/self/status (Linux and Android): VmHWM, VmRSS. */
    fun procStatusBytes(key: String = "VmHWM", status: File = File("/proc/self/status")): Long? = try {
        status.readLines().firstOrNull { it.startsWith("$key:") }
            ?.substringAfter(':')?.trim()?.removeSuffix("kB")?.trim()?.toLongOrNull()?.times(1024)
    } catch (e: Exception) {
        null
    }
}
