// pocketgan device benchmark for iOS: times every Core ML function of an exported bundle
// (one function per concept, MLModelConfiguration.functionName, iOS 18), the concept
// switch, the cold load, and the pix2pix peer when it is bundled; writes the results in
// pocketgan's benchmark schema (pocketgan/bench/schema.json) as pocketgan-bench-ios.json,
// attached to the test result and saved in the app's Documents folder.
//
// Steps: device_harness/ios/README.md (and docs/device-benchmarks.md). In short: add this file
// to a unit-test target that links PocketganCore, the iOS demo's Swift package (ios_demo/
// Package.swift): the demo's PocketganDemoTests already does; in another app project add
// ios_demo as a local package and link PocketganCore to the test target. The manifest, the
// statistics and the results document come from its BundleManifest and BenchReport, as for
// the demo's own DemoBenchmarkTests. Add the exported bundle folder ("pocketgan export --for
// ios --out ios_bundle", as a folder reference named `pocketgan_bundle`) and optionally the
// peer package (`python -m pocketgan.bench.peers --backends coreml --out peers`) to the test
// target's resources; run on a device with
//   xcodebuild test -scheme <demo> -destination 'platform=iOS,name=<phone>' \
//       -only-testing:<TestTarget>/PocketganBenchTests -resultBundlePath bench.xcresult | tee xcodebuild.log
// then on the Mac: python -m pocketgan.bench.device ios <exported attachments or json> --out DIR
//
// The fields it leaves empty (ratios, GEMM shares, claims) are derived by
// pocketgan.bench.results.finalize when the JSON is read back.

import CoreML
import PocketganCore
import XCTest

@available(iOS 18.0, macOS 15.0, *)
final class PocketganBenchTests: XCTestCase {

    // MARK: settings (override with the environment variables of the test scheme)

    /// POCKETGAN_BENCH_COMPUTE_UNITS: `all` (default), `cpuOnly` or `cpuAndNeuralEngine`; the
    /// other settings are PocketganCore's BenchSettings.fromEnvironment() (POCKETGAN_BENCH_ROUNDS,
    /// POCKETGAN_BENCH_WARMUP, POCKETGAN_BENCH_REPEATS).
    static func computeUnits(_ env: [String: String] = ProcessInfo.processInfo.environment) -> MLComputeUnits {
        switch env["POCKETGAN_BENCH_COMPUTE_UNITS"] ?? "all" {
        case "cpuOnly": return .cpuOnly
        case "cpuAndNeuralEngine": return .cpuAndNeuralEngine
        default: return .all
        }
    }

    static let resultName = "pocketgan-bench-ios.json"
    static let bundleFolder = "pocketgan_bundle"

    // MARK: the bundle

    /// The exported bundle's manifest (PocketganCore's BundleManifest) and compiled Core ML
    /// models, found in the test bundle.
    struct BenchBundle {
        let root: URL
        let manifest: BundleManifest
        let coreml: BundleManifest.CoreMLTarget

        var concepts: [String] { manifest.conceptNames }
        var size: Int { manifest.imageSize }
        var inputName: String { manifest.io.input.name }
        var precision: String { coreml.precision }

        /// The function that runs `concept` in the multifunction package.
        func function(_ concept: String) -> String { coreml.functions[concept] ?? concept }

        static func locate() throws -> BenchBundle {
            let testBundle = Bundle(for: PocketganBenchTests.self)
            guard let root = testBundle.url(forResource: PocketganBenchTests.bundleFolder, withExtension: nil) else {
                throw XCTSkip("add the exported bundle as a folder reference named \(PocketganBenchTests.bundleFolder)")
            }
            let manifest = try PocketganBundle.open(root).manifest
            guard let coreml = manifest.targets.coreml else {
                throw XCTSkip("the bundle has no Core ML target (pocketgan export --for ios)")
            }
            return BenchBundle(root: root, manifest: manifest, coreml: coreml)
        }

        /// The compiled model of a concept mode: Xcode compiles coreml/generator.mlpackage
        /// (separate) and coreml/merged.mlpackage (merged) into .mlmodelc resources.
        func compiledModel(_ mode: String) -> URL? {
            let name = mode == "separate" ? "generator" : "merged"
            let testBundle = Bundle(for: PocketganBenchTests.self)
            if let url = testBundle.url(forResource: name, withExtension: "mlmodelc") { return url }
            let package = root.appendingPathComponent("coreml/\(name).mlpackage")
            guard FileManager.default.fileExists(atPath: package.path) else { return nil }
            return try? MLModel.compileModel(at: package)
        }

        func bytes(_ mode: String) -> Int? {
            let name = mode == "separate" ? "generator" : "merged"
            return directoryBytes(root.appendingPathComponent("coreml/\(name).mlpackage"))
        }
    }

    // MARK: measurement helpers (the statistics and the schema: PocketganCore's BenchReport)

    static func millis(since t0: UInt64) -> Double { Double(BenchReport.now() - t0) / 1e6 }

    func input(size: Int, name: String) throws -> MLDictionaryFeatureProvider {
        let array = try MLMultiArray(shape: [1, 3, NSNumber(value: size), NSNumber(value: size)], dataType: .float32)
        let count = array.count
        array.withUnsafeMutableBufferPointer(ofType: Float.self) { buffer, _ in
            for i in 0..<count { buffer[i] = Float(i % 255) / 127.5 - 1 }
        }
        return try MLDictionaryFeatureProvider(dictionary: [name: MLFeatureValue(multiArray: array)])
    }

    func load(_ url: URL, function: String?, units: MLComputeUnits) throws -> MLModel {
        let config = MLModelConfiguration()
        config.computeUnits = units
        if let function { config.functionName = function }
        return try MLModel(contentsOf: url, configuration: config)
    }

    /// `repeats` passes of `warmup` + `rounds` predictions: per-repeat samples (ms).
    func timePredictions(_ model: MLModel, _ features: MLFeatureProvider, repeats: Int, _ s: BenchSettings) throws -> [[Double]] {
        try BenchReport.timePasses(repeats: repeats, warmup: s.warmup, rounds: s.rounds) {
            _ = try model.prediction(from: features)
        }
    }

    // MARK: the benchmark

    func testBenchmarkAllFunctions() throws {
        let s = BenchSettings.fromEnvironment()
        let units = Self.computeUnits()
        let bundle = try BenchBundle.locate()
        let features = try input(size: bundle.size, name: bundle.inputName)
        let baseline = BenchReport.residentPeakBytes()
        var records: [[String: Any]] = []
        let flops = bundle.manifest.generator.macs.map { 2 * $0 }

        for mode in ["separate", "merged"] {
            guard let url = bundle.compiledModel(mode) else { continue }
            var rec = BenchReport.record(model: "pocketgan", modelName: BenchReport.modelName(bundle.manifest), backend: "coreml",
                                         precision: bundle.precision, mode: mode, size: bundle.size)
            do {
                // cold open: load every concept's function, as the runtime does when it opens a bundle
                var opens: [Double] = []
                var models: [String: MLModel] = [:]
                for _ in 0..<s.openRounds {
                    let t0 = BenchReport.now()
                    var loaded: [String: MLModel] = [:]
                    for concept in bundle.concepts {
                        loaded[concept] = try load(url, function: bundle.function(concept), units: units)
                    }
                    opens.append(Self.millis(since: t0))
                    models = loaded
                }
                // set_concept: the runtime's swap between loaded functions (a lookup and an assignment)
                var active = models[bundle.concepts[0]]!
                var swaps: [Double] = []
                let batch = 10
                var i = 0
                for _ in 0..<(s.swapRounds / batch) {
                    let t0 = BenchReport.now()
                    for _ in 0..<batch {
                        active = models[bundle.concepts[i % bundle.concepts.count]]!
                        i += 1
                    }
                    swaps.append(Self.millis(since: t0) / Double(batch))
                }
                _ = active
                // latency: the first concept in every pass; every concept's median in extra
                let first = bundle.concepts[0]
                let passes = try timePredictions(models[first]!, features, repeats: s.repeats, s)
                rec["latency_ms"] = BenchReport.latency(passes, warmup: s.warmup, tolerance: s.tolerance)
                var perConcept: [String: Double] = [:]
                for concept in bundle.concepts {
                    let once = try timePredictions(models[concept]!, features, repeats: 1, s)
                    perConcept[concept] = BenchReport.stats(once[0])["median"] as? Double
                }
                rec["concept"] = first
                rec["concepts"] = bundle.concepts.count
                rec["open_ms"] = BenchReport.stats(opens)
                rec["set_concept_ms"] = BenchReport.stats(swaps)
                rec["peak_rss_bytes"] = BenchReport.orNull(BenchReport.residentPeakBytes())
                rec["baseline_rss_bytes"] = BenchReport.orNull(baseline)
                rec["artifact_bytes"] = BenchReport.orNull(bundle.bytes(mode))
                rec["flops"] = BenchReport.orNull(flops)
                rec["extra"] = ["per_concept_median_ms": perConcept, "compute_units": "\(units.rawValue)",
                                "xctest_tests": ["testConceptSwitchPerformance", "testFunctionLatencyPerformance"]] as [String: Any]
                rec["notes"] = ["peak RSS: the test process's resident_size_max after this group (cumulative)",
                                "cold open: MLModel(contentsOf:configuration:) of every concept's function, compiled model"]
            } catch {
                rec["status"] = "failed"
                rec["error"] = "\(error)"
            }
            records.append(rec)
        }

        // the pix2pix peer (no concepts), if its compiled package is bundled
        let testBundle = Bundle(for: PocketganBenchTests.self)
        let peerName = "pix2pix-coreml-fp16-\(bundle.size)"
        if let peerURL = testBundle.url(forResource: peerName, withExtension: "mlmodelc") {
            var rec = BenchReport.record(model: "pix2pix", modelName: "pix2pix-resnet9", backend: "coreml",
                                         precision: "fp16", mode: "none", size: bundle.size)
            do {
                var opens: [Double] = []
                var model: MLModel? = nil
                for _ in 0..<s.openRounds {
                    let t0 = BenchReport.now()
                    model = try load(peerURL, function: nil, units: units)
                    opens.append(Self.millis(since: t0))
                }
                let peerInput = try input(size: bundle.size, name: model!.modelDescription.inputDescriptionsByName.keys.first ?? "image")
                let passes = try timePredictions(model!, peerInput, repeats: s.repeats, s)
                rec["latency_ms"] = BenchReport.latency(passes, warmup: s.warmup, tolerance: s.tolerance)
                rec["open_ms"] = BenchReport.stats(opens)
                rec["peak_rss_bytes"] = BenchReport.orNull(BenchReport.residentPeakBytes())
                rec["artifact_bytes"] = BenchReport.orNull(testBundle.url(forResource: peerName, withExtension: "mlpackage").flatMap(directoryBytes))
            } catch {
                rec["status"] = "failed"
                rec["error"] = "\(error)"
            }
            records.append(rec)
        }

        let date = ISO8601DateFormatter().string(from: Date())
        let doc = BenchReport.document(
            machine: BenchReport.machine(created: date, pocketganVersion: bundle.manifest.pocketganVersion),
            records: records, settings: s, created: date, command: "xcodebuild test -only-testing:PocketganBenchTests",
            manifest: bundle.manifest, harness: "device_harness/ios", config: ["compute_units": "\(units.rawValue)"])
        let data = try BenchReport.saveInDocuments(doc, name: Self.resultName)
        let attachment = XCTAttachment(data: data, uniformTypeIdentifier: "public.json")
        attachment.name = Self.resultName
        attachment.lifetime = .keepAlways
        add(attachment)
        XCTAssertFalse(records.isEmpty, "no Core ML model was found in the test bundle")
    }

    // MARK: XCTest measure blocks (Xcode's baselines; parsed from the xcodebuild log too)

    func testConceptSwitchPerformance() throws {
        let bundle = try BenchBundle.locate()
        guard let url = bundle.compiledModel("separate") else { throw XCTSkip("no Core ML generator package") }
        var models: [String: MLModel] = [:]
        for concept in bundle.concepts {
            models[concept] = try load(url, function: bundle.function(concept), units: .all)
        }
        var active = models[bundle.concepts[0]]!
        measure(metrics: [XCTClockMetric()]) {
            for i in 0..<10_000 { active = models[bundle.concepts[i % bundle.concepts.count]]! }
        }
        _ = active
    }

    func testFunctionLatencyPerformance() throws {
        let bundle = try BenchBundle.locate()
        guard let url = bundle.compiledModel("separate") else { throw XCTSkip("no Core ML generator package") }
        let model = try load(url, function: bundle.function(bundle.concepts[0]), units: .all)
        let features = try input(size: bundle.size, name: bundle.inputName)
        _ = try model.prediction(from: features)
        measure(metrics: [XCTClockMetric(), XCTMemoryMetric()]) {
            _ = try? model.prediction(from: features)
        }
    }
}

/// Total bytes of a file or a package directory.
func directoryBytes(_ url: URL) -> Int? {
    let fm = FileManager.default
    var isDir: ObjCBool = false
    guard fm.fileExists(atPath: url.path, isDirectory: &isDir) else { return nil }
    if !isDir.boolValue { return (try? fm.attributesOfItem(atPath: url.path))?[.size] as? Int }
    var total = 0
    if let files = fm.enumerator(at: url, includingPropertiesForKeys: [.fileSizeKey]) {
        for case let file as URL in files {
            total += (try? file.resourceValues(forKeys: [.fileSizeKey]))?.fileSize ?? 0
        }
    }
    return total
}
