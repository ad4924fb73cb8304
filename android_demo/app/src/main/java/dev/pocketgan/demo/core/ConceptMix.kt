package dev.pocketgan.demo.core

/** A strength or blend the bundle cannot run: out of range, or no mix method. */
class MixException(message: String) : PocketganException(message)

/**
 * Concept strength and blending (docs/strength-and-blending.md), the same rules as the Python
 * runtime's `pocketgan.runtime.concept_mix`: a mix is `{concept: weight}`, each weight in
 * [0, 1.5], summing to at most 1.5; the neutral concept takes what is left. The ExecuTorch
 * program's mix method takes the weights as one float vector, in `targets.executorch.mix.concepts`
 * order, so the app passes a few floats and the base stays loaded.
 */
object ConceptMix {
    const val MAX_WEIGHT = 1.5

    /**
     * The mix weight of [strength] of a concept with calibration [curve] (the weights of
     * strengths 0, 0.1, ..., 1), interpolated; past 1, or without a curve, the strength itself.
     */
    fun strengthWeight(curve: List<Double>?, strength: Double): Double {
        if (curve == null || strength >= 1.0) return strength
        val pos = strength * (curve.size - 1)
        val i = minOf(pos.toInt(), curve.size - 2)
        return curve[i] + (pos - i) * (curve[i + 1] - curve[i])
    }

    /** Validates a mix against the bundle's concepts; returns it. */
    fun check(manifest: BundleManifest, weights: Map<String, Double>): Map<String, Double> {
        if (weights.isEmpty()) throw MixException("a mix names at least one concept with its weight")
        for ((name, w) in weights) {
            manifest.concept(name)
            if (!w.isFinite() || w < 0.0 || w > MAX_WEIGHT) throw MixException("the weight of '$name' is $w; strengths and weights go from 0 to 1.5")
        }
        val total = weights.values.sum()
        if (total > MAX_WEIGHT + 1e-9) throw MixException("the weights sum to $total; a mix may sum to at most 1.5")
        return weights
    }

    /** One concept at [strength] (0: the photo back, 1: the concept as trained), as a mix. */
    fun strength(manifest: BundleManifest, concept: String, strength: Double): Map<String, Double> {
        check(manifest, mapOf(concept to strength))
        return mapOf(concept to strengthWeight(manifest.strengthCurves[concept], strength))
    }

    /** The cross-fade from [from] (t = 0) to [to] (t = 1): weights 1 - t and t. */
    fun crossFade(manifest: BundleManifest, from: String, to: String, t: Double): Map<String, Double> {
        if (!(t in 0.0..1.0)) throw MixException("a cross-fade position goes from 0 to 1, got $t")
        return check(manifest, if (from == to) mapOf(from to 1.0) else mapOf(from to 1.0 - t, to to t))
    }

    /** The mix method's weight vector for [weights] (checked). */
    fun weightVector(manifest: BundleManifest, weights: Map<String, Double>): FloatArray {
        check(manifest, weights)
        val method = manifest.requireExecuTorch().mix
            ?: throw MixException("this ExecuTorch export has no mix method: export from a bundle with a neutral concept (docs/strength-and-blending.md)")
        return FloatArray(method.concepts.size) { (weights[method.concepts[it]] ?: 0.0).toFloat() }
    }
}
