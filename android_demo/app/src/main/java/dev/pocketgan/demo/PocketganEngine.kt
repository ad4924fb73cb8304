package dev.pocketgan.demo

import dev.pocketgan.demo.core.BenchTarget
import dev.pocketgan.demo.core.BundleException
import dev.pocketgan.demo.core.BundleManifest
import dev.pocketgan.demo.core.ConceptMix
import dev.pocketgan.demo.core.ConceptMode
import dev.pocketgan.demo.core.DirectorySource
import dev.pocketgan.demo.core.GoldenCheck
import dev.pocketgan.demo.core.Imaging
import dev.pocketgan.demo.core.MixException
import dev.pocketgan.demo.core.RgbImage
import dev.pocketgan.demo.core.UnknownConceptException
import dev.pocketgan.demo.core.VerifiedBundle
import java.io.Closeable
import java.io.File
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor

/**
 * The pocketgan runtime on ExecuTorch (the part an app copies, with `core/`).
 *
 * A bundle exported with `pocketgan export --for android` holds one `.pte` whose methods
 * are the concepts (`targets.executorch.program` and `.methods` in manifest.json). The
 * engine loads that program once and every concept's method right away; switching concepts
 * is choosing another method name for the next `Module.execute`: nothing is reloaded.
 *
 * Thread-safety: [runTensor] and [edit] may be called from any thread (calls are serialised:
 * the methods of one program share their memory arenas); [setConcept] from any thread.
 */
class PocketganEngine private constructor(
    val bundle: VerifiedBundle,
    /** the concept mode actually opened (AUTO resolves to separate when the bundle has it) */
    val mode: ConceptMode,
    /** the program file, as named by the manifest */
    val programPath: String,
    private val module: Module,
    /** concept -> method name, from `targets.executorch.methods` */
    private val methods: Map<String, String>,
    /** the mix method (strength and blending), from `targets.executorch.mix`, or null */
    private val mixMethod: String?,
) : Closeable {

    val manifest: BundleManifest get() = bundle.manifest

    /** Concept names in the manifest's display order. */
    val concepts: List<String> = manifest.conceptNames

    /** The model's square input side S. */
    val imageSize: Int = manifest.imageSize

    private val inputShape = manifest.input.shape.map { it.toLong() }.toLongArray()
    private val outputCount = manifest.output.elementCount
    private val lock = Any()

    @Volatile
    var concept: String = concepts[0]
        private set

    /** The active mix's weights for the mix method, or null: the concept's own method runs. */
    @Volatile
    private var mixWeights: FloatArray? = null

    /** Whether the bundle has strength and blending (the program's mix method). */
    val canMix: Boolean get() = mixMethod != null

    /**
     * Makes [name] the active concept at [strength] (0: the photo back, 1: the concept as
     * trained, up to 1.5): the next call runs its method, or the mix method with the weights.
     */
    fun setConcept(name: String, strength: Double = 1.0) {
        if (name !in methods) throw UnknownConceptException(name, concepts)
        mixWeights = if (strength == 1.0) null else mixVector(ConceptMix.strength(manifest, name, strength))
        concept = name
    }

    /** A cross-fade from [from] (t = 0) to [to] (t = 1) in one pass. */
    fun setCrossFade(from: String, to: String, t: Double) {
        val weights = ConceptMix.crossFade(manifest, from, to, t)
        mixWeights = if (weights == mapOf(from to 1.0)) null else mixVector(weights)
        concept = if (t < 0.5) from else to
    }

    private fun mixVector(weights: Map<String, Double>): FloatArray {
        if (mixMethod == null) throw MixException("this bundle has no mix method: re-export it from a bundle with a neutral concept")
        return ConceptMix.weightVector(manifest, weights)
    }

    /** The mix method on [x] with [weights] (the method's weight vector). */
    fun runMix(x: FloatArray, weights: FloatArray): FloatArray {
        val method = mixMethod ?: throw MixException("this bundle has no mix method")
        val outputs = synchronized(lock) {
            module.execute(method, EValue.from(Tensor.fromBlob(x, inputShape)), EValue.from(Tensor.fromBlob(weights, longArrayOf(weights.size.toLong()))))
        }
        if (outputs.isEmpty()) throw BundleException("method '$method' returned nothing")
        return outputs[0].toTensor().getDataAsFloatArray()
    }

    /** Raw model call: (1, 3, S, S) float32 NCHW in [-1, 1] -> the same shape (the active mix, if any). */
    fun runTensor(x: FloatArray, concept: String = this.concept): FloatArray {
        val method = methods[concept] ?: throw UnknownConceptException(concept, concepts)
        require(x.size == inputShape.fold(1L) { a, b -> a * b }.toInt()) { "input has ${x.size} floats, expected shape ${inputShape.toList()}" }
        val weights = mixWeights
        if (weights != null && concept == this.concept) return runMix(x, weights)
        val outputs = synchronized(lock) { module.execute(method, EValue.from(Tensor.fromBlob(x, inputShape))) }
        if (outputs.isEmpty()) throw BundleException("method '$method' returned nothing")
        val y = outputs[0].toTensor().getDataAsFloatArray()
        if (y.size != outputCount) throw BundleException("method '$method' returned ${y.size} floats, io.output.shape has $outputCount")
        return y
    }

    /** An edited photo and where the time went. */
    class Edit(val image: RgbImage, val modelMs: Double, val totalMs: Double)

    /**
     * Edits a photo of any size with [concept]: letterbox into S x S, run the method, crop
     * back and resize to the photo's size (bit-exact with pocketgan.runtime.imaging). Pass
     * [inputBuffer] (3 * S * S floats) to reuse it frame after frame.
     */
    fun edit(photo: RgbImage, concept: String = this.concept, inputBuffer: FloatArray? = null): Edit {
        val t0 = System.nanoTime()
        val x = Imaging.toModelInput(photo, imageSize, inputBuffer)
        val t1 = System.nanoTime()
        val y = runTensor(x.tensor, concept)
        val t2 = System.nanoTime()
        val image = Imaging.fromModelOutput(y, x.placement)
        return Edit(image, (t2 - t1) / 1e6, (System.nanoTime() - t0) / 1e6)
    }

    /** Every concept on the bundle's golden input, against its expected output (docs/bundle-format.md). */
    fun checkGolden(): List<GoldenCheck.Result> {
        val saved = mixWeights
        mixWeights = null
        try {
            val concepts = GoldenCheck.run(bundle) { c, x -> runTensor(x, c) }
            return if (canMix) concepts + GoldenCheck.runMixes(bundle) { w, x -> runMix(x, w) } else concepts
        } finally {
            mixWeights = saved
        }
    }

    override fun close() {
        synchronized(lock) { module.destroy() }
    }

    /** The engine as the benchmark's target (core/Benchmark.kt). */
    fun asBenchTarget(): BenchTarget = object : BenchTarget {
        override val concepts: List<String> get() = this@PocketganEngine.concepts
        override fun setConcept(concept: String) = this@PocketganEngine.setConcept(concept)
        override fun run(input: FloatArray): FloatArray = runTensor(input)
        override fun close() = this@PocketganEngine.close()
    }

    companion object {
        /**
         * Opens the bundle in [dir] (a folder holding manifest.json and the files it lists):
         * checks the format version, verifies the program's sha256, loads it and every
         * concept's method.
         */
        fun open(dir: File, mode: ConceptMode = ConceptMode.AUTO, loadMode: Int = Module.LOAD_MODE_MMAP): PocketganEngine {
            val bundle = VerifiedBundle.open(DirectorySource(dir))
            val manifest = bundle.manifest
            val (resolved, program) = manifest.programPath(mode)
            bundle.verify(program)
            val methods = manifest.conceptNames.associateWith { manifest.methodName(it) }
            val mixMethod = manifest.requireExecuTorch().mix?.method?.takeIf { resolved == ConceptMode.SEPARATE }
            val module = Module.load(File(dir, program).absolutePath, loadMode)
            try {
                val available = module.getMethods().toSet()
                for ((concept, method) in methods) {
                    if (method !in available) {
                        throw BundleException("$program has no method '$method' for concept '$concept' (it has ${available.sorted()})")
                    }
                    // load every concept's method now: a concept switch later loads nothing
                    module.loadMethod(method)
                }
                if (mixMethod != null) {
                    if (mixMethod !in available) throw BundleException("$program has no mix method '$mixMethod'")
                    module.loadMethod(mixMethod)
                }
            } catch (e: Exception) {
                module.destroy()
                throw e
            }
            return PocketganEngine(bundle, resolved, program, module, methods, mixMethod)
        }
    }
}
