import Foundation

/// Concept strength and blending (docs/strength-and-blending.md), the same rules as the Python
/// runtime's `pocketgan.runtime.concept_mix`: a mix is `[concept: weight]`, each weight in
/// [0, 1.5], summing to at most 1.5; the neutral concept takes what is left. The Core ML mix
/// function takes the weights as one `concept_weights` vector in `targets.coreml.mix.concepts`
/// order, so a slider changes a few floats and nothing is reloaded.
public enum ConceptMix {
    public static let maxWeight = 1.5

    /// The mix weight of `strength` with calibration `curve` (the weights of strengths 0, 0.1,
    /// ..., 1), interpolated; past 1, or without a curve, the strength itself.
    public static func strengthWeight(curve: [Double]?, strength: Double) -> Double {
        guard let curve = curve, strength < 1.0 else { return strength }
        let pos = strength * Double(curve.count - 1)
        let i = min(Int(pos), curve.count - 2)
        return curve[i] + (pos - Double(i)) * (curve[i + 1] - curve[i])
    }

    /// Validates a mix against the bundle's concepts.
    @discardableResult
    public static func check(_ manifest: BundleManifest, _ weights: [String: Double]) throws -> [String: Double] {
        if weights.isEmpty { throw PocketganError.bundle("a mix names at least one concept with its weight") }
        for (name, w) in weights {
            _ = try manifest.concept(name)
            if !w.isFinite || w < 0 || w > maxWeight {
                throw PocketganError.bundle("the weight of '\(name)' is \(w); strengths and weights go from 0 to 1.5")
            }
        }
        let total = weights.values.reduce(0, +)
        if total > maxWeight + 1e-9 { throw PocketganError.bundle("the weights sum to \(total); a mix may sum to at most 1.5") }
        return weights
    }

    /// One concept at `strength` (0: the photo back, 1: the concept as trained), as a mix.
    public static func strength(_ manifest: BundleManifest, concept: String, strength: Double) throws -> [String: Double] {
        try check(manifest, [concept: strength])
        return [concept: strengthWeight(curve: manifest.neutral?.strengthCurves?[concept], strength: strength)]
    }

    /// The cross-fade from `from` (t = 0) to `to` (t = 1): weights 1 - t and t.
    public static func crossFade(_ manifest: BundleManifest, from: String, to: String, t: Double) throws -> [String: Double] {
        if !(0.0...1.0).contains(t) { throw PocketganError.bundle("a cross-fade position goes from 0 to 1, got \(t)") }
        return try check(manifest, from == to ? [from: 1.0] : [from: 1.0 - t, to: t])
    }

    /// The mix function's weight vector for `weights` (checked).
    public static func weightVector(_ manifest: BundleManifest, _ weights: [String: Double]) throws -> [Float] {
        try check(manifest, weights)
        guard let mix = try manifest.requireCoreML().mix else {
            throw PocketganError.bundle("this Core ML export has no mix function: export from a bundle with a neutral concept")
        }
        return mix.concepts.map { Float(weights[$0] ?? 0) }
    }
}
