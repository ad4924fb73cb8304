import CoreML
import CryptoKit
import Foundation
import PocketganCore

/// The pocketgan runtime on Core ML (the part an app copies, with the PocketganCore package).
///
/// iOS 18: a bundle exported with `pocketgan export --for ios` holds one multifunction
/// `.mlpackage` (`targets.coreml.package`) with a function per concept
/// (`targets.coreml.functions`). The engine loads one `MLModel` per concept from the same
/// compiled package with `MLModelConfiguration.functionName`; the base weights are stored
/// once and shared. Switching concepts is picking another loaded model: nothing is reloaded.
///
/// iOS 17 (no multifunction models): one single-function package per concept
/// (`targets.coreml.ios17.packages`), each loaded once.
///
/// Models are compiled at build time: the app target's build phase (scripts/embed_bundle.sh)
/// verifies the bundle and compiles every package the manifest names into `<name>.mlmodelc`
/// in the app's resources. A package that only sits in a bundle folder is verified against
/// the manifest and compiled on the device once instead.
public final class CoreMLEngine {
    public enum Variant: String {
        /// one package, a function per concept (iOS 18 / macOS 15)
        case multifunction
        /// one package per concept (iOS 17)
        case ios17
    }

    public let bundle: PocketganBundle
    public let variant: Variant
    /// the concept mode of the loaded models (`separate`: LoRA as a branch; `merged`: folded in)
    public let conceptMode: String
    public var manifest: BundleManifest { bundle.manifest }
    public var concepts: [String] { manifest.conceptNames }
    public var imageSize: Int { manifest.imageSize }
    public private(set) var concept: String
    /// the package paths (from the manifest) the models came from
    public let packagePaths: [String]

    private let models: [String: MLModel]
    /// the mix function (strength and blending) and its weights input, when the bundle has one
    private let mixModel: MLModel?
    private var mixWeights: [Float]?
    private let inputName: String
    private let outputName: String
    private let inputShape: [NSNumber]
    private let lock = NSLock()

    private init(bundle: PocketganBundle, variant: Variant, conceptMode: String, models: [String: MLModel], packagePaths: [String],
                 mixModel: MLModel? = nil) throws {
        self.bundle = bundle
        self.variant = variant
        self.conceptMode = conceptMode
        self.models = models
        self.mixModel = mixModel
        self.packagePaths = packagePaths
        let coreml = try bundle.manifest.requireCoreML()
        // the tensor names are the graph's, from the manifest (io / targets.coreml.inputs, outputs)
        guard let input = coreml.inputs.first, let output = coreml.outputs.first else {
            throw PocketganError.bundle("targets.coreml has no inputs/outputs")
        }
        inputName = input.name
        outputName = output.name
        inputShape = input.shape.map { NSNumber(value: $0) }
        concept = bundle.manifest.conceptNames[0]
    }

    /// Opens the bundle: iOS 18 loads every function of the multifunction package, iOS 17 (or
    /// `forceIOS17: true`) the per-concept packages. `resources` is where Xcode put the compiled models.
    public static func open(_ bundle: PocketganBundle, resources: Bundle = .main, computeUnits: MLComputeUnits = .all,
                            forceIOS17: Bool = false) throws -> CoreMLEngine {
        let manifest = bundle.manifest
        let coreml = try manifest.requireCoreML()
        let config = MLModelConfiguration()
        config.computeUnits = computeUnits
        if #available(iOS 18.0, macOS 15.0, *), !forceIOS17, let package = coreml.package ?? coreml.mergedPackage {
            let url = try compiledModel(package, bundle: bundle, resources: resources)
            var models: [String: MLModel] = [:]
            for concept in manifest.conceptNames {
                let perFunction = config.copy() as! MLModelConfiguration
                perFunction.functionName = try manifest.functionName(concept)
                models[concept] = try MLModel(contentsOf: url, configuration: perFunction)
            }
            let mode = coreml.package != nil ? "separate" : "merged"
            var mixModel: MLModel?
            if mode == "separate", let mix = coreml.mix {
                let perFunction = config.copy() as! MLModelConfiguration
                perFunction.functionName = mix.function
                mixModel = try MLModel(contentsOf: url, configuration: perFunction)
            }
            return try CoreMLEngine(bundle: bundle, variant: .multifunction, conceptMode: mode, models: models, packagePaths: [package],
                                    mixModel: mixModel)
        }
        guard let fallback = coreml.ios17 else {
            throw PocketganError.bundle("this OS needs the iOS 17 fallback packages (targets.coreml.ios17): export with the fallback on")
        }
        var models: [String: MLModel] = [:]
        var paths: [String] = []
        for concept in manifest.conceptNames {
            let path = try manifest.ios17Package(concept)
            models[concept] = try MLModel(contentsOf: try compiledModel(path, bundle: bundle, resources: resources), configuration: config)
            paths.append(path)
        }
        return try CoreMLEngine(bundle: bundle, variant: .ios17, conceptMode: fallback.conceptMode, models: models, packagePaths: paths)
    }

    /// The compiled model of a package named by the manifest.
    static func compiledModel(_ packagePath: String, bundle: PocketganBundle, resources: Bundle) throws -> URL {
        let name = ((packagePath as NSString).lastPathComponent as NSString).deletingPathExtension
        // 1. compiled at build time, after its files were verified (scripts/embed_bundle.sh)
        if let url = resources.url(forResource: name, withExtension: "mlmodelc") { return url }
        // 2. the package itself in the bundle folder: verify every file, compile once, cache
        let package = try bundle.url(packagePath)
        guard FileManager.default.fileExists(atPath: package.path) else {
            throw PocketganError.bundle("no compiled model for \(packagePath): add the package to the app target (ios_demo/README.md)")
        }
        try bundle.verifyTree(packagePath)
        let digest = bundle.manifest.artifacts.filter { $0.key.hasPrefix(packagePath + "/") }
            .sorted { $0.key < $1.key }.map { $0.value.sha256 }.joined()
        let cache = try FileManager.default.url(for: .applicationSupportDirectory, in: .userDomainMask, appropriateFor: nil, create: true)
            .appendingPathComponent("pocketgan/\(String(SHA256.hex(Data(digest.utf8)).prefix(16)))/\(name).mlmodelc")
        if FileManager.default.fileExists(atPath: cache.path) { return cache }
        let compiled = try MLModel.compileModel(at: package)
        try FileManager.default.createDirectory(at: cache.deletingLastPathComponent(), withIntermediateDirectories: true)
        try? FileManager.default.removeItem(at: cache)
        try FileManager.default.moveItem(at: compiled, to: cache)
        return cache
    }

    /// Whether the bundle has strength and blending (the mix function).
    public var canMix: Bool { mixModel != nil }

    /// Makes `name` the active concept at `strength` (0: the photo back, 1: the concept as
    /// trained, up to 1.5): the next call runs its function, or the mix function.
    public func setConcept(_ name: String, strength: Double = 1.0) throws {
        guard models[name] != nil else { throw PocketganError.unknownConcept(name, known: concepts) }
        let weights = strength == 1.0 ? nil : try mixVector(ConceptMix.strength(manifest, concept: name, strength: strength))
        lock.lock()
        concept = name
        mixWeights = weights
        lock.unlock()
    }

    /// A cross-fade from `from` (t = 0) to `to` (t = 1) in one pass.
    public func setCrossFade(from: String, to: String, t: Double) throws {
        let mix = try ConceptMix.crossFade(manifest, from: from, to: to, t: t)
        let weights = mix == [from: 1.0] ? nil : try mixVector(mix)
        lock.lock()
        concept = t < 0.5 ? from : to
        mixWeights = weights
        lock.unlock()
    }

    private func mixVector(_ weights: [String: Double]) throws -> [Float] {
        guard canMix else { throw PocketganError.bundle("this bundle has no mix function: export it from a bundle with a neutral concept") }
        return try ConceptMix.weightVector(manifest, weights)
    }

    /// The mix function on `x` with `weights` (its weight vector, `ConceptMix.weightVector`).
    public func runMix(_ x: [Float], weights: [Float]) throws -> [Float] {
        guard let model = mixModel, let mix = try manifest.requireCoreML().mix else {
            throw PocketganError.bundle("this bundle has no mix function")
        }
        let array = try MLMultiArray(shape: inputShape, dataType: .float32)
        array.withUnsafeMutableBufferPointer(ofType: Float.self) { buffer, _ in _ = buffer.initialize(from: x) }
        let w = try MLMultiArray(shape: [NSNumber(value: weights.count)], dataType: .float32)
        w.withUnsafeMutableBufferPointer(ofType: Float.self) { buffer, _ in _ = buffer.initialize(from: weights) }
        let features = try MLDictionaryFeatureProvider(dictionary: [
            inputName: MLFeatureValue(multiArray: array), mix.weightsInput: MLFeatureValue(multiArray: w),
        ])
        guard let y = try model.prediction(from: features).featureValue(for: outputName)?.multiArrayValue else {
            throw PocketganError.bundle("the mix function returned no '\(outputName)' array")
        }
        return try Self.floats(y, count: manifest.io.output.elementCount)
    }

    /// Raw model call: (1, 3, S, S) Float32 NCHW in [-1, 1] -> the same shape.
    public func runTensor(_ x: [Float], concept: String? = nil) throws -> [Float] {
        lock.lock()
        let name = concept ?? self.concept
        let weights = concept == nil ? mixWeights : nil
        lock.unlock()
        if let weights = weights { return try runMix(x, weights: weights) }
        guard let model = models[name] else { throw PocketganError.unknownConcept(name, known: concepts) }
        let array = try MLMultiArray(shape: inputShape, dataType: .float32)
        guard array.count == x.count else { throw PocketganError.invalidImage("input has \(x.count) floats, expected \(array.count)") }
        array.withUnsafeMutableBufferPointer(ofType: Float.self) { buffer, _ in
            _ = buffer.initialize(from: x)
        }
        let features = try MLDictionaryFeatureProvider(dictionary: [inputName: MLFeatureValue(multiArray: array)])
        let result = try model.prediction(from: features)
        guard let y = result.featureValue(for: outputName)?.multiArrayValue else {
            throw PocketganError.bundle("the model returned no '\(outputName)' array")
        }
        return try Self.floats(y, count: manifest.io.output.elementCount)
    }

    /// An MLMultiArray (float32 or float16, any strides) as contiguous NCHW floats.
    static func floats(_ y: MLMultiArray, count: Int) throws -> [Float] {
        guard y.count == count, y.shape.count == 4 else {
            throw PocketganError.bundle("the model returned shape \(y.shape), expected \(count) values in 4 dimensions")
        }
        let shape = y.shape.map(\.intValue), strides = y.strides.map(\.intValue)
        var out = [Float](repeating: 0, count: count)
        var o = 0
        func each(_ get: (Int) -> Float) {
            for c in 0..<shape[1] {
                for h in 0..<shape[2] {
                    for w in 0..<shape[3] {
                        out[o] = get(c * strides[1] + h * strides[2] + w * strides[3])
                        o += 1
                    }
                }
            }
        }
        switch y.dataType {
        case .float32:
            y.withUnsafeBufferPointer(ofType: Float.self) { p in each { p[$0] } }
        case .double:
            y.withUnsafeBufferPointer(ofType: Double.self) { p in each { Float(p[$0]) } }
        default:
            // float16 and others: element by element through NSNumber (slow, but exact)
            for c in 0..<shape[1] {
                for h in 0..<shape[2] {
                    for w in 0..<shape[3] {
                        out[o] = y[[0, c, h, w].map { NSNumber(value: $0) }].floatValue
                        o += 1
                    }
                }
            }
        }
        return out
    }

    /// An edited photo and where the time went.
    public struct Edit {
        public let image: RGBImage
        public let modelMs: Double
        public let totalMs: Double
    }

    /// Edits a photo of any size: letterbox into S x S, run the concept's function, crop back
    /// and resize to the photo's size (bit-exact with pocketgan.runtime.imaging).
    public func edit(_ photo: RGBImage, concept: String? = nil) throws -> Edit {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let x = try Imaging.toModelInput(photo, size: imageSize)
        let t1 = DispatchTime.now().uptimeNanoseconds
        let y = try runTensor(x.tensor, concept: concept)
        let t2 = DispatchTime.now().uptimeNanoseconds
        let image = try Imaging.fromModelOutput(y, x.placement)
        let t3 = DispatchTime.now().uptimeNanoseconds
        return Edit(image: image, modelMs: Double(t2 - t1) / 1e6, totalMs: Double(t3 - t0) / 1e6)
    }

    /// Every concept on the bundle's golden input, against its expected output.
    public func checkGolden() throws -> [GoldenCheck.Result] {
        let concepts = try GoldenCheck.run(bundle: bundle, decode: RGBImage.decodePNG) { concept, x in try runTensor(x, concept: concept) }
        guard canMix else { return concepts }
        return concepts + (try GoldenCheck.runMixes(bundle: bundle, decode: RGBImage.decodePNG) { w, x in try runMix(x, weights: w) })
    }
}

/// The engine as the benchmark's target (PocketganCore/BenchReport.swift).
final class EngineBenchTarget: BenchTarget {
    let engine: CoreMLEngine
    init(_ engine: CoreMLEngine) { self.engine = engine }
    var concepts: [String] { engine.concepts }
    func setConcept(_ concept: String) throws { try engine.setConcept(concept) }
    func run(_ input: [Float]) throws -> [Float] { try engine.runTensor(input) }
}
