package dev.pocketgan.demo

import android.Manifest
import android.annotation.SuppressLint
import android.content.pm.PackageManager
import android.graphics.Bitmap
import android.os.Bundle
import android.util.Log
import android.util.Size
import android.view.MotionEvent
import android.widget.Button
import android.widget.ImageView
import android.widget.SeekBar
import android.widget.TextView
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.core.resolutionselector.ResolutionSelector
import androidx.camera.core.resolutionselector.ResolutionStrategy
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.core.content.ContextCompat
import com.google.android.material.chip.Chip
import com.google.android.material.chip.ChipGroup
import dev.pocketgan.demo.core.FpsMeter
import dev.pocketgan.demo.core.Frames
import dev.pocketgan.demo.core.GoldenCheck
import dev.pocketgan.demo.core.RgbImage
import java.util.Locale
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * The camera demo: CameraX frames -> letterbox -> the active concept's ExecuTorch method ->
 * cropped back -> on screen, with the frame rate and the model time in the overlay. The
 * chips are the manifest's concepts; tapping one switches the method the next frame runs
 * (no reload). With the intent extra `benchmark=true` it runs [BenchmarkMode] instead.
 */
class MainActivity : AppCompatActivity() {
    private lateinit var edited: ImageView
    private lateinit var fpsView: TextView
    private lateinit var status: TextView
    private lateinit var chips: ChipGroup

    /** Camera analysis and model calls: one background thread, frames dropped while busy. */
    private val worker: ExecutorService = Executors.newSingleThreadExecutor()

    @Volatile private var engine: PocketganEngine? = null
    @Volatile private var showOriginal = false
    private var inputBuffer: FloatArray? = null
    private val fps = FpsMeter()

    private val cameraPermission = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) startCamera() else status.setText(R.string.camera_denied)
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        edited = findViewById(R.id.edited)
        fpsView = findViewById(R.id.fps)
        status = findViewById(R.id.status)
        chips = findViewById(R.id.concepts)

        if (BenchmarkMode.requested(intent)) {
            runBenchmark()
            return
        }
        setUpButtons()
        worker.execute {
            try {
                val opened = PocketganEngine.open(BundleInstaller.install(this))
                engine = opened
                inputBuffer = FloatArray(3 * opened.imageSize * opened.imageSize)
                runOnUiThread {
                    showConcepts(opened)
                    status.text = getString(R.string.app_name) + ": " + opened.concepts.size + " concepts, " +
                        opened.mode.json + " program " + opened.programPath
                    requestCamera()
                }
            } catch (e: Exception) {
                Log.e(TAG, "could not open the bundle", e)
                runOnUiThread { status.text = "Could not open the bundle: ${e.message}" }
            }
        }
    }

    override fun onDestroy() {
        super.onDestroy()
        worker.execute { engine?.close(); engine = null }
        worker.shutdown()
    }

    /** One chip per concept, in the manifest's order; the label and description come from the manifest. */
    private fun showConcepts(e: PocketganEngine) {
        chips.removeAllViews()
        for (concept in e.manifest.concepts) {
            val chip = Chip(this).apply {
                id = android.view.View.generateViewId()
                text = concept.name.replace('_', ' ')
                tag = concept.name
                contentDescription = concept.description
                isCheckable = true
                isChecked = concept.name == e.concept
            }
            chips.addView(chip)
        }
        chips.setOnCheckedStateChangeListener { group, checked ->
            val chip = checked.firstOrNull()?.let { group.findViewById<Chip>(it) } ?: return@setOnCheckedStateChangeListener
            // a concept switch: the next frame runs another method of the same loaded program
            selected = chip.tag as String
            findViewById<SeekBar>(R.id.cross_fade).progress = 0
            applyMix(e)
        }
        if (e.canMix) showMixControls(e)
    }

    /** The concept picked by the chips; the strength and cross-fade sliders act on it. */
    private var selected: String? = null

    /** Strength (0..1.5) and a cross-fade from the picked concept to the next one, in one pass each. */
    private fun showMixControls(e: PocketganEngine) {
        findViewById<android.view.View>(R.id.mix_controls).visibility = android.view.View.VISIBLE
        val listener = object : SeekBar.OnSeekBarChangeListener {
            override fun onProgressChanged(bar: SeekBar, progress: Int, fromUser: Boolean) = applyMix(e)
            override fun onStartTrackingTouch(bar: SeekBar) = Unit
            override fun onStopTrackingTouch(bar: SeekBar) = Unit
        }
        findViewById<SeekBar>(R.id.strength).setOnSeekBarChangeListener(listener)
        findViewById<SeekBar>(R.id.cross_fade).setOnSeekBarChangeListener(listener)
    }

    private fun applyMix(e: PocketganEngine) {
        val concept = selected ?: e.concept
        val strength = findViewById<SeekBar>(R.id.strength).progress / 100.0
        val fade = findViewById<SeekBar>(R.id.cross_fade).progress / 100.0
        findViewById<TextView>(R.id.strength_label).text =
            String.format(Locale.ROOT, "%s %.2f", getString(R.string.strength), strength)
        if (!e.canMix) return e.setConcept(concept)
        if (fade > 0.0) {
            val next = e.concepts[(e.concepts.indexOf(concept) + 1) % e.concepts.size]
            e.setCrossFade(concept, next, fade)
        } else {
            e.setConcept(concept, strength)
        }
    }

    @SuppressLint("ClickableViewAccessibility")
    private fun setUpButtons() {
        findViewById<Button>(R.id.original).setOnTouchListener { view, event ->
            when (event.actionMasked) {
                MotionEvent.ACTION_DOWN -> showOriginal = true
                MotionEvent.ACTION_UP, MotionEvent.ACTION_CANCEL -> {
                    showOriginal = false
                    view.performClick()
                }
            }
            true
        }
        findViewById<Button>(R.id.golden).setOnClickListener {
            val e = engine ?: return@setOnClickListener
            status.text = getString(R.string.check_golden) + "…"
            worker.execute {
                val text = try {
                    GoldenCheck.summary(e.checkGolden())
                } catch (ex: Exception) {
                    "golden check failed: ${ex.message}"
                }
                Log.i(TAG, text)
                runOnUiThread { status.text = text }
            }
        }
    }

    private fun requestCamera() {
        if (ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED) {
            startCamera()
        } else {
            cameraPermission.launch(Manifest.permission.CAMERA)
        }
    }

    private fun startCamera() {
        val future = ProcessCameraProvider.getInstance(this)
        future.addListener({
            val provider = future.get()
            val analysis = ImageAnalysis.Builder()
                .setResolutionSelector(
                    ResolutionSelector.Builder()
                        .setResolutionStrategy(ResolutionStrategy(Size(640, 480), ResolutionStrategy.FALLBACK_RULE_CLOSEST_HIGHER_THEN_LOWER))
                        .build(),
                )
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                .build()
            analysis.setAnalyzer(worker, ::analyze)
            provider.unbindAll()
            provider.bindToLifecycle(this, CameraSelector.DEFAULT_BACK_CAMERA, analysis)
        }, ContextCompat.getMainExecutor(this))
    }

    /** One camera frame, on the worker thread. */
    private fun analyze(frame: ImageProxy) {
        frame.use {
            val e = engine ?: return
            val plane = frame.planes[0]
            val rgb = Frames.rgbaToRgb(plane.buffer, frame.width, frame.height, plane.rowStride, frame.imageInfo.rotationDegrees)
            val result = e.edit(rgb, inputBuffer = inputBuffer)
            val shown = if (showOriginal) rgb else result.image
            val bitmap = toBitmap(shown)
            val rate = fps.tick()
            val overlay = String.format(
                Locale.ROOT, "%.1f fps  model %.1f ms  frame %.1f ms\n%s  %dx%d -> %d²",
                rate, result.modelMs, result.totalMs, e.concept, rgb.width, rgb.height, e.imageSize,
            )
            runOnUiThread {
                edited.setImageBitmap(bitmap)
                fpsView.text = overlay
            }
        }
    }

    private fun toBitmap(image: RgbImage): Bitmap =
        Bitmap.createBitmap(image.toArgb(), image.width, image.height, Bitmap.Config.ARGB_8888)

    private fun runBenchmark() {
        status.setText(R.string.benchmark_running)
        val settings = BenchmarkMode.settings(intent)
        worker.execute {
            val message = try {
                val file = BenchmarkMode.run(this, settings) { step ->
                    Log.i(BenchmarkMode.LOG_TAG, step)
                    runOnUiThread { status.text = getString(R.string.benchmark_running) + "\n" + step }
                }
                "wrote ${file.absolutePath}"
            } catch (e: Exception) {
                Log.e(BenchmarkMode.LOG_TAG, "benchmark failed", e)
                "benchmark failed: ${e.message}"
            }
            Log.i(BenchmarkMode.LOG_TAG, message)
            runOnUiThread { status.text = message }
        }
    }

    private companion object {
        const val TAG = "pocketgan"
    }
}
