package dev.pocketgan.demo.core

/**
 * The golden-vector check (docs/bundle-format.md, "Golden vectors"): for every concept with
 * `golden`, edit `golden.input` through the same pre/post-processing and compare with
 * `golden.output`; a runtime passes at `parity.threshold_db` (35 dB fp32, 30 dB int8).
 */
object GoldenCheck {

    data class Result(
        val concept: String,
        val psnrDb: Double,
        val thresholdDb: Double,
        /** the model call alone */
        val modelMs: Double,
    ) {
        val passed: Boolean get() = psnrDb >= thresholdDb
    }

    /**
     * Runs the check. [runModel] takes a concept name and the (1, 3, S, S) input tensor and
     * returns the model's output tensor (the app calls the concept's ExecuTorch method).
     * Concepts without golden vectors are skipped; an empty list means the bundle has none.
     */
    fun run(
        bundle: VerifiedBundle,
        thresholdDb: Double = bundle.manifest.executorch?.thresholdDb ?: 35.0,
        runModel: (concept: String, input: FloatArray) -> FloatArray,
    ): List<Result> {
        val size = bundle.manifest.imageSize
        val decoded = HashMap<String, RgbImage>()
        fun image(path: String) = decoded.getOrPut(path) { Png.decode(bundle.read(path)) }
        return bundle.manifest.concepts.mapNotNull { concept ->
            val golden = concept.golden ?: return@mapNotNull null
            val input = image(golden.input)
            val expected = image(golden.output)
            val x = Imaging.toModelInput(input, size)
            val t0 = System.nanoTime()
            val y = runModel(concept.name, x.tensor)
            val ms = (System.nanoTime() - t0) / 1e6
            val edited = Imaging.fromModelOutput(y, x.placement)
            Result(concept.name, Imaging.psnr(edited, expected), thresholdDb, ms)
        }
    }

    /**
     * The golden vectors of strengths and a blend (`neutral.golden_mixes`). [runMix] takes the
     * mix method's weight vector ([ConceptMix.weightVector]) and the input tensor. A result's
     * `concept` names the mix, e.g. `cartoon=0.6,stylize=0.4`.
     */
    fun runMixes(
        bundle: VerifiedBundle,
        thresholdDb: Double = bundle.manifest.executorch?.thresholdDb ?: 35.0,
        runMix: (weights: FloatArray, input: FloatArray) -> FloatArray,
    ): List<Result> {
        val size = bundle.manifest.imageSize
        return bundle.manifest.goldenMixes.map { g ->
            val x = Imaging.toModelInput(Png.decode(bundle.read(g.input)), size)
            val weights = ConceptMix.weightVector(bundle.manifest, g.weights)
            val t0 = System.nanoTime()
            val y = runMix(weights, x.tensor)
            val ms = (System.nanoTime() - t0) / 1e6
            val label = g.weights.entries.joinToString(",") { "${it.key}=${it.value}" }
            Result(label, Imaging.psnr(Imaging.fromModelOutput(y, x.placement), Png.decode(bundle.read(g.output))), thresholdDb, ms)
        }
    }

    /** One line per concept, for a log or a dialog. */
    fun summary(results: List<Result>): String =
        if (results.isEmpty()) {
            "the bundle has no golden vectors"
        } else {
            results.joinToString("\n") {
                val db = if (it.psnrDb.isInfinite()) "identical" else String.format(java.util.Locale.ROOT, "%.1f dB", it.psnrDb)
                "${if (it.passed) "PASS" else "FAIL"} ${it.concept}: $db (>= ${it.thresholdDb} dB)"
            }
        }
}
