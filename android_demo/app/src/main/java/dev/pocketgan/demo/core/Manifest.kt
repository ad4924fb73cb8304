package dev.pocketgan.demo.core

/**
 * The parts of a bundle's manifest.json (docs/bundle-format.md, format_version 1 and 2) that an
 * ExecuTorch app reads. Every file path, tensor name and method name comes from here: the
 * app never builds one from a concept name.
 */
class BundleManifest private constructor(
    /** the parsed JSON, for the keys this class does not model */
    val raw: Map<String, Any?>,
    val formatVersion: Int,
    val pocketganVersion: String,
    val generatorSize: String,
    /** multiply-accumulates of one forward pass at [input]'s shape */
    val macs: Long?,
    val input: TensorSpec,
    val output: TensorSpec,
    /** in display order */
    val concepts: List<Concept>,
    val artifacts: Map<String, Artifact>,
    val executorch: ExecuTorchTarget?,
    /** per concept, the mix weights of strengths 0, 0.1, ..., 1 (`neutral.strength_curves`) */
    val strengthCurves: Map<String, List<Double>> = emptyMap(),
    /** golden vectors of strengths and a blend (`neutral.golden_mixes`) */
    val goldenMixes: List<GoldenMix> = emptyList(),
) {
    data class TensorSpec(val name: String, val shape: List<Int>) {
        val elementCount: Int get() = shape.fold(1) { a, b -> a * b }
    }

    data class Golden(val input: String, val output: String)

    /** A golden vector of a mix: the weights it runs with, the shared input, the expected edit. */
    data class GoldenMix(val weights: Map<String, Double>, val input: String, val output: String)

    /** `targets.executorch.mix`: the method taking (image, weights), weights[k] for concepts[k]. */
    data class MixMethod(val method: String, val concepts: List<String>)

    data class Concept(val name: String, val description: String, val golden: Golden?)

    data class Artifact(val sha256: String, val bytes: Long)

    /** `targets.executorch` */
    data class ExecuTorchTarget(
        val precision: String,
        val conceptMode: String,
        /** separate: one .pte, a method per concept */
        val program: String?,
        /** merged: one .pte, a method per concept with the LoRA folded in */
        val mergedProgram: String?,
        /** concept -> method name in [program] / [mergedProgram] */
        val methods: Map<String, String>,
        /** the PSNR a runtime must reach on the golden vectors */
        val thresholdDb: Double,
        /** strength and blending (a bundle with a neutral concept), else null */
        val mix: MixMethod? = null,
    )

    /** The square input side S (`io.input.shape[3]`). */
    val imageSize: Int get() = input.shape[3]

    val conceptNames: List<String> get() = concepts.map { it.name }

    fun concept(name: String): Concept =
        concepts.firstOrNull { it.name == name } ?: throw UnknownConceptException(name, conceptNames)

    /** The ExecuTorch target, or a clear error for a bundle exported without one. */
    fun requireExecuTorch(): ExecuTorchTarget = executorch
        ?: throw BundleException("the bundle has no ExecuTorch target: export it with `pocketgan export --for android`")

    /** Which concept modes the ExecuTorch target has, separate first. */
    fun execuTorchModes(): List<ConceptMode> {
        val t = executorch ?: return emptyList()
        return listOfNotNull(
            ConceptMode.SEPARATE.takeIf { t.program != null },
            ConceptMode.MERGED.takeIf { t.mergedProgram != null },
        )
    }

    /** The program of [mode] (AUTO: separate when present, else merged). */
    fun programPath(mode: ConceptMode): Pair<ConceptMode, String> {
        val t = requireExecuTorch()
        return when (mode) {
            ConceptMode.SEPARATE -> ConceptMode.SEPARATE to (t.program
                ?: throw BundleException("targets.executorch has no separate program (concept_mode ${t.conceptMode})"))
            ConceptMode.MERGED -> ConceptMode.MERGED to (t.mergedProgram
                ?: throw BundleException("targets.executorch has no merged program (concept_mode ${t.conceptMode})"))
            ConceptMode.AUTO -> if (t.program != null) ConceptMode.SEPARATE to t.program else programPath(ConceptMode.MERGED)
        }
    }

    /** The method that runs [concept] in the ExecuTorch program. */
    fun methodName(concept: String): String {
        concept(concept)
        return requireExecuTorch().methods[concept]
            ?: throw BundleException("targets.executorch.methods has no method for concept '$concept'")
    }

    /** Every file the ExecuTorch app needs from the bundle: the program of [mode] and the golden vectors. */
    fun execuTorchFiles(mode: ConceptMode): List<String> {
        val files = LinkedHashSet<String>()
        files.add(programPath(mode).second)
        for (c in concepts) c.golden?.let { files.add(it.input); files.add(it.output) }
        for (g in goldenMixes) { files.add(g.input); files.add(g.output) }
        return files.toList()
    }

    companion object {
        const val FORMAT = "pocketgan-bundle"

        /** The highest format_version this code reads. */
        const val SUPPORTED_FORMAT_VERSION = 2

        private val CONCEPT_NAME = Regex("^[a-z0-9][a-z0-9_-]{0,63}$")
        private val SHA256 = Regex("^[0-9a-f]{64}$")

        fun parse(text: String): BundleManifest {
            @Suppress("UNCHECKED_CAST")
            val m = Json.parse(text) as? Map<String, Any?> ?: throw BundleException("manifest.json is not a JSON object")
            if (m["format"] != FORMAT) throw BundleException("not a pocketgan bundle: format is ${m["format"]}, expected $FORMAT")
            val version = (m["format_version"] as? Long)?.toInt() ?: throw BundleException("manifest.format_version must be an integer")
            if (version > SUPPORTED_FORMAT_VERSION) {
                throw UnsupportedFormatException(
                    "the bundle has format_version $version; this app reads format_version $SUPPORTED_FORMAT_VERSION: " +
                        "upgrade the app (or export the bundle with the pocketgan version this app was built for)")
            }
            if (version < 1) throw BundleException("manifest.format_version $version is not valid")
            val generator = m.obj("generator", "manifest")
            val io = m.obj("io", "manifest")
            val input = tensor(io.obj("input", "manifest.io"), "manifest.io.input")
            val output = tensor(io.obj("output", "manifest.io"), "manifest.io.output")
            if (input.shape[0] != 1 || input.shape[1] != 3 || input.shape[2] != input.shape[3]) {
                throw BundleException("io.input.shape must be [1, 3, S, S], got ${input.shape}")
            }
            if (output.shape != input.shape) throw BundleException("io.output.shape ${output.shape} differs from io.input.shape ${input.shape}")

            val concepts = m.list("concepts", "manifest").mapIndexed { i, item ->
                @Suppress("UNCHECKED_CAST")
                val c = item as? Map<String, Any?> ?: throw BundleException("manifest.concepts[$i] must be an object")
                val where = "manifest.concepts[$i]"
                val name = c.str("name", where)
                if (!CONCEPT_NAME.matches(name)) throw BundleException("$where.name '$name' is not a valid concept name")
                val golden = c.objOrNull("golden", where)?.let {
                    Golden(checkPath(it.str("input", "$where.golden")), checkPath(it.str("output", "$where.golden")))
                }
                Concept(name, c.strOrNull("description") ?: "", golden)
            }
            if (concepts.isEmpty()) throw BundleException("manifest.concepts is empty")
            if (concepts.map { it.name }.toSet().size != concepts.size) throw BundleException("manifest.concepts has duplicate names")

            val artifacts = m.obj("artifacts", "manifest").mapValues { (path, v) ->
                checkPath(path)
                @Suppress("UNCHECKED_CAST")
                val a = v as? Map<String, Any?> ?: throw BundleException("manifest.artifacts[$path] must be an object")
                val sha = a.str("sha256", "manifest.artifacts[$path]")
                if (!SHA256.matches(sha)) throw BundleException("manifest.artifacts[$path].sha256 is not a sha256")
                Artifact(sha, a.long("bytes", "manifest.artifacts[$path]"))
            }

            val targets = m.obj("targets", "manifest")
            val executorch = targets.objOrNull("executorch", "manifest.targets")?.let { t ->
                val where = "manifest.targets.executorch"
                val parity = t.objOrNull("parity", where)
                ExecuTorchTarget(
                    precision = t.str("precision", where),
                    conceptMode = t.str("concept_mode", where),
                    program = t.strOrNull("program")?.let(::checkPath),
                    mergedProgram = t.strOrNull("merged_program")?.let(::checkPath),
                    methods = t.stringMap("methods", where),
                    thresholdDb = parity?.get("threshold_db")?.asNumber("$where.parity.threshold_db") ?: 35.0,
                    mix = t.objOrNull("mix", where)?.let { mix ->
                        val order = mix.list("concepts", "$where.mix").map { it as? String ?: throw BundleException("$where.mix.concepts must be names") }
                        if (order != concepts.map { it.name }) throw BundleException("$where.mix.concepts $order are not the bundle's concepts")
                        MixMethod(mix.str("method", "$where.mix"), order)
                    },
                )
            }
            val neutral = m.objOrNull("neutral", "manifest")
            val curves = neutral?.objOrNull("strength_curves", "manifest.neutral")?.mapValues { (name, v) ->
                val where = "manifest.neutral.strength_curves.$name"
                val curve = (v as? List<*> ?: throw BundleException("$where must be a list")).map { it.asNumber(where) }
                if (curve.size != 11 || curve.first() != 0.0 || curve.last() != 1.0 || curve.zipWithNext().any { (a, b) -> b < a }) {
                    throw BundleException("$where must be 11 weights rising from 0 to 1")
                }
                curve
            } ?: emptyMap()
            val goldenMixes = neutral?.get("golden_mixes")?.let { list ->
                (list as? List<*> ?: throw BundleException("manifest.neutral.golden_mixes must be a list")).mapIndexed { i, item ->
                    val where = "manifest.neutral.golden_mixes[$i]"
                    @Suppress("UNCHECKED_CAST")
                    val g = item as? Map<String, Any?> ?: throw BundleException("$where must be an object")
                    val weights = g.obj("weights", where).mapValues { (_, w) -> w.asNumber("$where.weights") }
                    GoldenMix(weights, checkPath(g.str("input", where)), checkPath(g.str("output", where)))
                }
            } ?: emptyList()
            return BundleManifest(
                raw = m,
                formatVersion = version,
                pocketganVersion = m.strOrNull("pocketgan_version") ?: "?",
                generatorSize = generator.strOrNull("size") ?: "custom",
                macs = generator["macs"] as? Long,
                input = input,
                output = output,
                concepts = concepts,
                artifacts = artifacts,
                executorch = executorch,
                strengthCurves = curves,
                goldenMixes = goldenMixes,
            )
        }

        private fun tensor(t: Map<String, Any?>, where: String): TensorSpec {
            val shape = t.list("shape", where).mapIndexed { i, v ->
                (v as? Long)?.toInt()?.takeIf { it > 0 } ?: throw BundleException("$where.shape[$i] must be a positive integer")
            }
            if (shape.size != 4) throw BundleException("$where.shape must have 4 dimensions (NCHW), got $shape")
            val dtype = t.strOrNull("dtype") ?: "float32"
            if (dtype != "float32") throw BundleException("$where.dtype $dtype is not supported (float32)")
            return TensorSpec(t.str("name", where), shape)
        }

        /** A bundle path: relative, '/'-separated, without '..' (docs/bundle-format.md). */
        fun checkPath(path: String): String {
            if (path.isEmpty() || path.startsWith("/") || path.contains('\\') ||
                path.split('/').any { it.isEmpty() || it == "." || it == ".." }
            ) {
                throw BundleException("bundle path '$path' is not a relative '/'-separated path inside the bundle")
            }
            return path
        }
    }
}

/** Which program serves the concepts: the base + LoRA one (separate) or LoRA folded in (merged). */
enum class ConceptMode(val json: String) {
    AUTO("auto"),
    SEPARATE("separate"),
    MERGED("merged"),
}
