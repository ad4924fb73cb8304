import Foundation

/// The parts of a bundle's manifest.json (docs/bundle-format.md, format_version 1 and 2) that a
/// Core ML app reads. Every file path, tensor name and function name comes from here: the app
/// never builds one from a concept name. The coding keys spell out the manifest's keys.
public struct BundleManifest: Decodable {
    /// The highest format_version this code reads.
    public static let supportedFormatVersion = 2
    public static let format = "pocketgan-bundle"

    public let formatVersion: Int
    public let pocketganVersion: String?
    public let generator: Generator
    public let io: IO
    /// In display order.
    public let concepts: [Concept]
    public let targets: Targets
    public let artifacts: [String: Artifact]
    /// Strength and blending (docs/strength-and-blending.md); nil: the bundle has none.
    public let neutral: Neutral?

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version"
        case pocketganVersion = "pocketgan_version"
        case generator = "generator"
        case io = "io"
        case concepts = "concepts"
        case targets = "targets"
        case artifacts = "artifacts"
        case neutral = "neutral"
    }

    /// A golden vector of a mix: its weights, the shared input, the expected edit.
    public struct GoldenMix: Decodable {
        public let weights: [String: Double]
        public let input: String
        public let output: String

        enum CodingKeys: String, CodingKey {
            case weights = "weights"
            case input = "input"
            case output = "output"
        }
    }

    /// `neutral`: the identity concept's calibration curves and mix golden vectors.
    public struct Neutral: Decodable {
        /// Per concept, the mix weights of strengths 0, 0.1, ..., 1.
        public let strengthCurves: [String: [Double]]?
        public let goldenMixes: [GoldenMix]?

        enum CodingKeys: String, CodingKey {
            case strengthCurves = "strength_curves"
            case goldenMixes = "golden_mixes"
        }
    }

    /// `targets.coreml.mix`: the function taking (image, concept_weights), weights[k] for concepts[k].
    public struct MixFunction: Decodable {
        public let function: String
        /// the name of the function's weights input
        public let weightsInput: String
        public let concepts: [String]

        enum CodingKeys: String, CodingKey {
            case function = "function"
            case weightsInput = "weights_input"
            case concepts = "concepts"
        }
    }

    public struct Generator: Decodable {
        public let size: String?
        public let parameters: Int?
        /// Multiply-accumulates of one forward pass at `io.input.shape`.
        public let macs: Int?

        enum CodingKeys: String, CodingKey {
            case size = "size"
            case parameters = "parameters"
            case macs = "macs"
        }
    }

    public struct TensorSpec: Decodable, Equatable {
        public let name: String
        public let shape: [Int]
        public var elementCount: Int { shape.reduce(1, *) }

        enum CodingKeys: String, CodingKey {
            case name = "name"
            case shape = "shape"
        }
    }

    public struct IO: Decodable {
        public let input: TensorSpec
        public let output: TensorSpec

        enum CodingKeys: String, CodingKey {
            case input = "input"
            case output = "output"
        }
    }

    public struct Golden: Decodable, Equatable {
        public let input: String
        public let output: String

        enum CodingKeys: String, CodingKey {
            case input = "input"
            case output = "output"
        }
    }

    public struct Concept: Decodable, Identifiable {
        public let name: String
        public let description: String?
        public let golden: Golden?
        public var id: String { name }

        enum CodingKeys: String, CodingKey {
            case name = "name"
            case description = "description"
            case golden = "golden"
        }
    }

    public struct Artifact: Decodable {
        public let sha256: String
        public let bytes: Int

        enum CodingKeys: String, CodingKey {
            case sha256 = "sha256"
            case bytes = "bytes"
        }
    }

    public struct Parity: Decodable {
        /// The PSNR a runtime must reach on the golden vectors.
        public let thresholdDb: Double

        enum CodingKeys: String, CodingKey {
            case thresholdDb = "threshold_db"
        }
    }

    public struct FeatureSpec: Decodable, Equatable {
        public let name: String
        public let shape: [Int]
        public let dtype: String

        enum CodingKeys: String, CodingKey {
            case name = "name"
            case shape = "shape"
            case dtype = "dtype"
        }
    }

    /// `targets.coreml.ios17`: one single-function package per concept (iOS 17).
    public struct IOS17Fallback: Decodable {
        public let conceptMode: String
        public let packages: [String: String]

        enum CodingKeys: String, CodingKey {
            case conceptMode = "concept_mode"
            case packages = "packages"
        }
    }

    /// `targets.coreml`
    public struct CoreMLTarget: Decodable {
        public let precision: String
        public let conceptMode: String
        /// Separate mode: the multifunction package, a function per concept (iOS 18).
        public let package: String?
        /// Merged mode: the multifunction package with the LoRA folded into each function.
        public let mergedPackage: String?
        /// Concept -> function name in `package` / `mergedPackage`.
        public let functions: [String: String]
        public let defaultFunction: String
        public let inputs: [FeatureSpec]
        public let outputs: [FeatureSpec]
        public let ios17: IOS17Fallback?
        public let parity: Parity?
        /// Strength and blending in one function; nil without a neutral concept.
        public let mix: MixFunction?

        enum CodingKeys: String, CodingKey {
            case mix = "mix"
            case precision = "precision"
            case conceptMode = "concept_mode"
            case package = "package"
            case mergedPackage = "merged_package"
            case functions = "functions"
            case defaultFunction = "default_function"
            case inputs = "inputs"
            case outputs = "outputs"
            case ios17 = "ios17"
            case parity = "parity"
        }
    }

    public struct Targets: Decodable {
        public let coreml: CoreMLTarget?

        enum CodingKeys: String, CodingKey {
            case coreml = "coreml"
        }
    }

    /// The square input side S (`io.input.shape[3]`).
    public var imageSize: Int { io.input.shape[3] }

    public var conceptNames: [String] { concepts.map(\.name) }

    public func concept(_ name: String) throws -> Concept {
        guard let c = concepts.first(where: { $0.name == name }) else {
            throw PocketganError.unknownConcept(name, known: conceptNames)
        }
        return c
    }

    /// The Core ML target, or a clear error for a bundle exported without one.
    public func requireCoreML() throws -> CoreMLTarget {
        guard let t = targets.coreml else {
            throw PocketganError.bundle("the bundle has no Core ML target: export it with `pocketgan export --for ios`")
        }
        return t
    }

    /// The function that runs `concept` in the multifunction package.
    public func functionName(_ concept: String) throws -> String {
        _ = try self.concept(concept)
        guard let f = try requireCoreML().functions[concept] else {
            throw PocketganError.bundle("targets.coreml.functions has no function for concept '\(concept)'")
        }
        return f
    }

    /// The iOS 17 package of `concept`.
    public func ios17Package(_ concept: String) throws -> String {
        _ = try self.concept(concept)
        guard let fallback = try requireCoreML().ios17, let path = fallback.packages[concept] else {
            throw PocketganError.bundle("targets.coreml.ios17 has no package for concept '\(concept)': export with the iOS 17 fallback")
        }
        return try Self.checkPath(path)
    }

    /// The golden-vector threshold of the Core ML target (35 dB unless the export says otherwise).
    public var coreMLThresholdDb: Double { targets.coreml?.parity?.thresholdDb ?? 35 }

    /// Parses manifest.json, refusing a newer format_version with an "upgrade" error.
    public static func parse(_ data: Data) throws -> BundleManifest {
        guard let object = try? JSONSerialization.jsonObject(with: data), let top = object as? [String: Any] else {
            throw PocketganError.bundle("manifest.json is not a JSON object")
        }
        guard top["format"] as? String == format else {
            throw PocketganError.bundle("not a pocketgan bundle: format is \(top["format"] ?? "missing"), expected \(format)")
        }
        guard let version = top["format_version"] as? Int else {
            throw PocketganError.bundle("manifest.format_version must be an integer")
        }
        if version > supportedFormatVersion {
            throw PocketganError.unsupportedFormat(
                "the bundle has format_version \(version); this app reads format_version \(supportedFormatVersion): "
                    + "upgrade the app (or export the bundle with the pocketgan version this app was built for)")
        }
        let manifest: BundleManifest
        do {
            manifest = try JSONDecoder().decode(BundleManifest.self, from: data)
        } catch {
            throw PocketganError.bundle("manifest.json does not follow format_version \(version): \(error)")
        }
        try manifest.validate()
        return manifest
    }

    private func validate() throws {
        let s = io.input.shape
        guard s.count == 4, s[0] == 1, s[1] == 3, s[2] == s[3], s[3] > 0 else {
            throw PocketganError.bundle("io.input.shape must be [1, 3, S, S], got \(s)")
        }
        guard io.output.shape == s else {
            throw PocketganError.bundle("io.output.shape \(io.output.shape) differs from io.input.shape \(s)")
        }
        guard !concepts.isEmpty else { throw PocketganError.bundle("manifest.concepts is empty") }
        guard Set(conceptNames).count == concepts.count else { throw PocketganError.bundle("manifest.concepts has duplicate names") }
        for c in concepts {
            guard c.name.range(of: "^[a-z0-9][a-z0-9_-]{0,63}$", options: .regularExpression) != nil else {
                throw PocketganError.bundle("concept name '\(c.name)' is not valid")
            }
            if let g = c.golden {
                _ = try Self.checkPath(g.input)
                _ = try Self.checkPath(g.output)
            }
        }
        for (path, artifact) in artifacts {
            _ = try Self.checkPath(path)
            guard artifact.sha256.range(of: "^[0-9a-f]{64}$", options: .regularExpression) != nil else {
                throw PocketganError.bundle("manifest.artifacts[\(path)].sha256 is not a sha256")
            }
        }
        if let t = targets.coreml {
            for path in [t.package, t.mergedPackage].compactMap({ $0 }) { _ = try Self.checkPath(path) }
            for path in (t.ios17?.packages ?? [:]).values { _ = try Self.checkPath(path) }
            // the tensor names are the graph's in every backend (docs/bundle-format.md)
            guard t.inputs.first?.name == io.input.name, t.outputs.first?.name == io.output.name else {
                throw PocketganError.bundle("targets.coreml inputs/outputs do not match io.input/io.output")
            }
        }
    }

    /// A bundle path: relative, '/'-separated, without '..' (docs/bundle-format.md).
    @discardableResult
    public static func checkPath(_ path: String) throws -> String {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        if path.isEmpty || path.hasPrefix("/") || path.contains("\\") || parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) {
            throw PocketganError.bundle("bundle path '\(path)' is not a relative '/'-separated path inside the bundle")
        }
        return path
    }
}
