package dev.pocketgan.demo

import android.app.ActivityManager
import android.content.Context
import android.content.Intent
import android.os.Build
import dev.pocketgan.demo.core.BenchSettings
import dev.pocketgan.demo.core.Benchmark
import dev.pocketgan.demo.core.BundleManifest
import dev.pocketgan.demo.core.Json
import dev.pocketgan.demo.core.VerifiedBundle
import java.io.File
import java.time.Instant

/**
 * Benchmark mode: started with the intent extra `benchmark=true`, the app times every
 * concept method of every ExecuTorch program in the bundle (separate and merged), the
 * concept switch and the cold open, runs the golden check, and writes pocketgan's benchmark
 * schema (pocketgan/bench/schema.json) to its external files folder:
 *
 *     adb shell am start -W -n dev.pocketgan.demo/.MainActivity --ez benchmark true [--ei rounds 20]
 *     adb pull /sdcard/Android/data/dev.pocketgan.demo/files/pocketgan-bench-android.json
 *     python -m pocketgan.bench.report pocketgan-bench-android.json --out android_app_results
 */
object BenchmarkMode {
    const val EXTRA_BENCHMARK = "benchmark"
    const val EXTRA_ROUNDS = "rounds"
    const val EXTRA_WARMUP = "warmup"
    const val EXTRA_REPEATS = "repeats"
    const val RESULT_NAME = "pocketgan-bench-android.json"
    const val LOG_TAG = "pocketgan-bench"

    fun requested(intent: Intent?): Boolean = intent?.getBooleanExtra(EXTRA_BENCHMARK, false) == true

    fun settings(intent: Intent): BenchSettings {
        val d = BenchSettings()
        return BenchSettings(
            rounds = intent.getIntExtra(EXTRA_ROUNDS, d.rounds),
            warmup = intent.getIntExtra(EXTRA_WARMUP, d.warmup),
            repeats = intent.getIntExtra(EXTRA_REPEATS, d.repeats),
        )
    }

    /** Runs the benchmark (minutes; call it off the main thread) and returns the JSON file. */
    fun run(context: Context, settings: BenchSettings, progress: (String) -> Unit = {}): File {
        val dir = BundleInstaller.install(context)
        val manifest = VerifiedBundle.open(dev.pocketgan.demo.core.DirectorySource(dir)).manifest
        val records = manifest.execuTorchModes().map { mode ->
            progress("golden vectors, ${mode.json}")
            val parity = PocketganEngine.open(dir, mode).use { engine -> engine.checkGolden().minOfOrNull { it.psnrDb } }
            progress("timing ${manifest.conceptNames.size} concept methods, ${mode.json}")
            Benchmark.measure(
                manifest, mode, settings,
                open = { PocketganEngine.open(dir, mode).asBenchTarget() },
                artifactBytes = File(dir, manifest.programPath(mode).second).length(),
                rss = { Benchmark.procStatusBytes("VmHWM") },
                parityPsnrDb = parity,
            )
        }
        val now = Instant.now().toString()
        val doc = Benchmark.document(
            source = "android", machine = machine(context, manifest, settings, now), records = records, settings = settings,
            created = now, command = "adb shell am start -n ${context.packageName}/.MainActivity --ez benchmark true",
            manifest = manifest,
        )
        val out = File(context.getExternalFilesDir(null) ?: context.filesDir, RESULT_NAME)
        val tmp = File(out.parentFile, "$RESULT_NAME.partial")
        tmp.writeText(Json.write(doc, indent = 1))
        check(tmp.renameTo(out)) { "could not write $out" }
        return out
    }

    private fun machine(context: Context, manifest: BundleManifest, settings: BenchSettings, date: String): Map<String, Any?> {
        val memory = ActivityManager.MemoryInfo().also {
            (context.getSystemService(Context.ACTIVITY_SERVICE) as ActivityManager).getMemoryInfo(it)
        }
        val soc = if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.S) "${Build.SOC_MANUFACTURER} ${Build.SOC_MODEL}" else Build.HARDWARE
        return linkedMapOf(
            "cpu_model" to soc,
            "cpu_flags" to emptyList<String>(),
            "logical_cpus" to Runtime.getRuntime().availableProcessors(),
            "usable_cpus" to Runtime.getRuntime().availableProcessors(),
            "threads" to settings.threads,
            "memory_bytes" to memory.totalMem,
            "os" to "Android ${Build.VERSION.RELEASE} (API ${Build.VERSION.SDK_INT})",
            "device" to "${Build.MANUFACTURER} ${Build.MODEL}",
            "python" to null,
            "versions" to linkedMapOf(
                "pocketgan" to manifest.pocketganVersion,
                "executorch-android" to BuildConfig.EXECUTORCH_VERSION,
                "app" to BuildConfig.VERSION_NAME,
            ),
            "date" to date,
            "load_average" to null,
        )
    }
}
