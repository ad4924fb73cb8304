import Foundation

/// The golden-vector check (docs/bundle-format.md, "Golden vectors"): for every concept with
/// `golden`, edit `golden.input` through the same pre/post-processing and compare with
/// `golden.output`; a runtime passes at `parity.threshold_db` (35 dB fp32/fp16, 30 dB int8).
public enum GoldenCheck {
    public struct Result: Equatable {
        public let concept: String
        public let psnrDb: Double
        public let thresholdDb: Double
        /// the model call alone
        public let modelMs: Double
        public var passed: Bool { psnrDb >= thresholdDb }
    }

    /// Runs the check. `decode` turns a PNG into RGB (CoreGraphics on Apple platforms:
    /// `RGBImage.decodePNG`); `runModel` takes a concept and the (1, 3, S, S) input and
    /// returns the model's output. Concepts without golden vectors are skipped.
    public static func run(
        bundle: PocketganBundle,
        thresholdDb: Double? = nil,
        decode: (Data) throws -> RGBImage,
        runModel: (_ concept: String, _ input: [Float]) throws -> [Float]
    ) throws -> [Result] {
        let threshold = thresholdDb ?? bundle.manifest.coreMLThresholdDb
        let size = bundle.manifest.imageSize
        var decoded: [String: RGBImage] = [:]
        var results: [Result] = []
        for concept in bundle.manifest.concepts {
            guard let golden = concept.golden else { continue }
            for path in [golden.input, golden.output] where decoded[path] == nil {
                decoded[path] = try decode(try bundle.read(path))
            }
            guard let input = decoded[golden.input], let expected = decoded[golden.output] else { continue }
            let x = try Imaging.toModelInput(input, size: size)
            let t0 = DispatchTime.now().uptimeNanoseconds
            let y = try runModel(concept.name, x.tensor)
            let ms = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
            let edited = try Imaging.fromModelOutput(y, x.placement)
            results.append(Result(concept: concept.name, psnrDb: try Imaging.psnr(edited, expected), thresholdDb: threshold, modelMs: ms))
        }
        return results
    }

    /// The golden vectors of strengths and a blend (`neutral.golden_mixes`). `runMix` takes the
    /// mix function's weight vector (`ConceptMix.weightVector`) and the input tensor; a result's
    /// `concept` names the mix, e.g. `cartoon=0.6,stylize=0.4`.
    public static func runMixes(
        bundle: PocketganBundle,
        thresholdDb: Double? = nil,
        decode: (Data) throws -> RGBImage,
        runMix: (_ weights: [Float], _ input: [Float]) throws -> [Float]
    ) throws -> [Result] {
        let threshold = thresholdDb ?? bundle.manifest.coreMLThresholdDb
        let size = bundle.manifest.imageSize
        var results: [Result] = []
        for golden in bundle.manifest.neutral?.goldenMixes ?? [] {
            let x = try Imaging.toModelInput(try decode(try bundle.read(golden.input)), size: size)
            let weights = try ConceptMix.weightVector(bundle.manifest, golden.weights)
            let t0 = DispatchTime.now().uptimeNanoseconds
            let y = try runMix(weights, x.tensor)
            let ms = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
            let edited = try Imaging.fromModelOutput(y, x.placement)
            let label = golden.weights.keys.sorted().map { "\($0)=\(golden.weights[$0]!)" }.joined(separator: ",")
            let expected = try decode(try bundle.read(golden.output))
            results.append(Result(concept: label, psnrDb: try Imaging.psnr(edited, expected), thresholdDb: threshold, modelMs: ms))
        }
        return results
    }

    /// One line per concept, for a log or an alert.
    public static func summary(_ results: [Result]) -> String {
        if results.isEmpty { return "the bundle has no golden vectors" }
        return results.map { r in
            let db = r.psnrDb.isInfinite ? "identical" : String(format: "%.1f dB", r.psnrDb)
            return "\(r.passed ? "PASS" : "FAIL") \(r.concept): \(db) (>= \(r.thresholdDb) dB)"
        }.joined(separator: "\n")
    }
}
