// pocketgan device benchmark for iOS: times every Core ML function of an exported bundle
// (one function per concept, MLModelConfiguration.functionName, iOS 18), the concept
// switch, the cold load, and the pix2pix peer when it is bundled; writes the results in
// pocketgan's benchmark schema (pocketgan/bench/schema.json) as pocketgan-bench-ios.json,
// attached to the test result and saved in the app's Documents folder.
//
// Steps: docs/device-benchmarks.md. In short: add this file to the iOS demo's unit-test
// target; add the exported bundle folder ("pocketgan export --for ios --out ios_bundle",
// as a folder reference named `pocketgan_bundle`) and optionally the peer package
// (`python -m pocketgan.bench.peers --backends coreml --out peers`) to the test target's
// resources; run on a device with
//   xcodebuild test -scheme <demo> -destination 'platform=iOS,name=<phone>' \
//       -only-testing:<TestTarget>/PocketganBenchTests -resultBundlePath bench.xcresult | tee xcodebuild.log
// then on the Mac: python -m pocketgan.bench.device ios <exported attachments or json> --out DIR
//
// The fields it leaves empty (ratios, GEMM shares, stability list, claims) are derived by
// pocketgan.bench.results.finalize when the JSON is read back.

import CoreML
import Darwin
import XCTest

@available(iOS 18.0, macOS 15.0, *)
final class PocketganBenchTests: XCTestCase {

    // MARK: settings (override with the environment variables of the test scheme)

    struct Settings {
        var rounds = 20
        var warmup = 3
        var repeats = 2
        var openRounds = 3
        var swapRounds = 2000
        var tolerance = 0.10
        var computeUnits: MLComputeUnits = .all

        static func fromEnvironment() -> Settings {
            let env = ProcessInfo.processInfo.environment
            var s = Settings()
            if let v = env["POCKETGAN_BENCH_ROUNDS"].flatMap(Int.init) { s.rounds = v }
            if let v = env["POCKETGAN_BENCH_WARMUP"].flatMap(Int.init) { s.warmup = v }
            if let v = env["POCKETGAN_BENCH_REPEATS"].flatMap(Int.init) { s.repeats = v }
            if env["POCKETGAN_BENCH_COMPUTE_UNITS"] == "cpuOnly" { s.computeUnits = .cpuOnly }
            if env["POCKETGAN_BENCH_COMPUTE_UNITS"] == "cpuAndNeuralEngine" { s.computeUnits = .cpuAndNeuralEngine }
            return s
        }
    }

    static let resultName = "pocketgan-bench-ios.json"
    static let bundleFolder = "pocketgan_bundle"

    // MARK: the bundle

    /// The exported bundle's manifest and compiled Core ML models, found in the test bundle.
    struct BenchBundle {
        let root: URL
        let manifest: [String: Any]
        let concepts: [String]
        let size: Int
        let inputName: String
        let outputName: String
        let precision: String
        let functions: [String: String]

        static func locate() throws -> BenchBundle {
            let testBundle = Bundle(for: PocketganBenchTests.self)
            guard let root = testBundle.url(forResource: PocketganBenchTests.bundleFolder, withExtension: nil) else {
                throw XCTSkip("add the exported bundle as a folder reference named \(PocketganBenchTests.bundleFolder)")
            }
            let data = try Data(contentsOf: root.appendingPathComponent("manifest.json"))
            guard let manifest = try JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let io = manifest["io"] as? [String: Any],
                  let input = io["input"] as? [String: Any], let output = io["output"] as? [String: Any],
                  let shape = input["shape"] as? [Int],
                  let targets = manifest["targets"] as? [String: Any],
                  let coreml = targets["coreml"] as? [String: Any],
                  let concepts = manifest["concepts"] as? [[String: Any]] else {
                throw XCTSkip("the bundle has no Core ML target (pocketgan export --for ios)")
            }
            return BenchBundle(
                root: root, manifest: manifest, concepts: concepts.compactMap { $0["name"] as? String },
                size: shape[3], inputName: input["name"] as? String ?? "image",
                outputName: output["name"] as? String ?? "edited",
                precision: coreml["precision"] as? String ?? "fp16",
                functions: coreml["functions"] as? [String: String] ?? [:])
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

    // MARK: measurement helpers

    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    static func millis(_ start: UInt64, _ end: UInt64) -> Double { Double(end - start) / 1e6 }

    /// Median, quartiles (inclusive method, as Python's statistics.quantiles), mean, extremes.
    static func stats(_ samples: [Double]) -> [String: Any] {
        let xs = samples.sorted()
        func quantile(_ q: Double) -> Double {
            if xs.count == 1 { return xs[0] }
            let pos = q * Double(xs.count - 1)
            let lo = Int(pos.rounded(.down)), hi = min(lo + 1, xs.count - 1)
            return xs[lo] + (xs[hi] - xs[lo]) * (pos - Double(lo))
        }
        let q1 = quantile(0.25), q3 = quantile(0.75)
        let out: [String: Any] = ["median": quantile(0.5), "iqr": q3 - q1, "q1": q1, "q3": q3,
                                  "mean": xs.reduce(0, +) / Double(xs.count), "min": xs.first!, "max": xs.last!,
                                  "rounds": xs.count]
        return out
    }

    static func residentPeakBytes() -> Int? {
        var info = mach_task_basic_info()
        var count = mach_msg_type_number_t(MemoryLayout<mach_task_basic_info>.size / MemoryLayout<natural_t>.size)
        let kr = withUnsafeMutablePointer(to: &info) {
            $0.withMemoryRebound(to: integer_t.self, capacity: Int(count)) {
                task_info(mach_task_self_, task_flavor_t(MACH_TASK_BASIC_INFO), $0, &count)
            }
        }
        return kr == KERN_SUCCESS ? Int(info.resident_size_max) : nil
    }

    static func deviceModel() -> String {
        var system = utsname()
        uname(&system)
        return withUnsafeBytes(of: &system.machine) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

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
    func timePredictions(_ model: MLModel, _ features: MLFeatureProvider, _ s: Settings) throws -> [[Double]] {
        var passes: [[Double]] = []
        for _ in 0..<s.repeats {
            for _ in 0..<s.warmup { _ = try model.prediction(from: features) }
            var samples: [Double] = []
            for _ in 0..<s.rounds {
                let t0 = Self.now()
                _ = try model.prediction(from: features)
                samples.append(Self.millis(t0, Self.now()))
            }
            passes.append(samples)
        }
        return passes
    }

    func latencyEntry(_ passes: [[Double]], _ s: Settings) -> [String: Any] {
        var entry = Self.stats(passes.flatMap { $0 })
        let medians = passes.map { Self.stats($0)["median"] as! Double }
        let spread = medians.count < 2 ? 0 : (medians.max()! - medians.min()!) / medians.min()!
        entry["warmup"] = s.warmup
        entry["repeat_medians"] = medians
        entry["spread"] = spread
        entry["stable"] = spread <= s.tolerance
        return entry
    }

    func record(model: String, name: String, precision: String, mode: String, size: Int) -> [String: Any] {
        [
            "id": "\(model)/coreml/\(precision)/\(mode)/\(size)", "model": model, "model_name": name, "backend": "coreml",
            "precision": precision, "concept_mode": mode, "size": size, "concept": NSNull(), "concepts": NSNull(),
            "status": "ok", "error": NSNull(), "latency_ms": NSNull(), "open_ms": NSNull(),
            "open_fresh_process_ms": NSNull(), "set_concept_ms": NSNull(), "peak_rss_bytes": NSNull(),
            "baseline_rss_bytes": NSNull(), "artifact_bytes": NSNull(), "parity_psnr_db": NSNull(), "flops": NSNull(),
            "achieved_gops": NSNull(), "gemm_peak_share": NSNull(), "ratios": [String: Any](),
            "extra": [String: Any](), "notes": [String](),
        ]
    }

    // MARK: the benchmark

    func testBenchmarkAllFunctions() throws {
        let s = Settings.fromEnvironment()
        let bundle = try BenchBundle.locate()
        let features = try input(size: bundle.size, name: bundle.inputName)
        let baseline = Self.residentPeakBytes()
        var records: [[String: Any]] = []
        let generator = bundle.manifest["generator"] as? [String: Any] ?? [:]
        let modelName = "pocketgan-\(generator["size"] as? String ?? "small")"
        let flops = (generator["macs"] as? Int).map { 2 * $0 }

        for mode in ["separate", "merged"] {
            guard let url = bundle.compiledModel(mode) else { continue }
            var rec = record(model: "pocketgan", name: modelName, precision: bundle.precision, mode: mode, size: bundle.size)
            do {
                // cold open: load every concept's function, as the runtime does when it opens a bundle
                var opens: [Double] = []
                var models: [String: MLModel] = [:]
                for _ in 0..<s.openRounds {
                    let t0 = Self.now()
                    var loaded: [String: MLModel] = [:]
                    for concept in bundle.concepts {
                        loaded[concept] = try load(url, function: bundle.functions[concept] ?? concept, units: s.computeUnits)
                    }
                    opens.append(Self.millis(t0, Self.now()))
                    models = loaded
                }
                // set_concept: the runtime's swap between loaded functions (a lookup and an assignment)
                var active = models[bundle.concepts[0]]!
                var swaps: [Double] = []
                let batch = 10
                var i = 0
                for _ in 0..<(s.swapRounds / batch) {
                    let t0 = Self.now()
                    for _ in 0..<batch {
                        active = models[bundle.concepts[i % bundle.concepts.count]]!
                        i += 1
                    }
                    swaps.append(Self.millis(t0, Self.now()) / Double(batch))
                }
                _ = active
                // latency: the first concept in every pass; every concept's median in extra
                let first = bundle.concepts[0]
                rec["latency_ms"] = latencyEntry(try timePredictions(models[first]!, features, s), s)
                var perConcept: [String: Double] = [:]
                for concept in bundle.concepts {
                    var once = s
                    once.repeats = 1
                    let passes = try timePredictions(models[concept]!, features, once)
                    perConcept[concept] = Self.stats(passes[0])["median"] as? Double
                }
                rec["concept"] = first
                rec["concepts"] = bundle.concepts.count
                rec["open_ms"] = Self.stats(opens)
                rec["set_concept_ms"] = Self.stats(swaps)
                rec["peak_rss_bytes"] = orNull(Self.residentPeakBytes())
                rec["baseline_rss_bytes"] = orNull(baseline)
                rec["artifact_bytes"] = orNull(bundle.bytes(mode))
                rec["flops"] = orNull(flops)
                rec["extra"] = ["per_concept_median_ms": perConcept, "compute_units": "\(s.computeUnits.rawValue)",
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
            var rec = record(model: "pix2pix", name: "pix2pix-resnet9", precision: "fp16", mode: "none", size: bundle.size)
            do {
                var opens: [Double] = []
                var model: MLModel? = nil
                for _ in 0..<s.openRounds {
                    let t0 = Self.now()
                    model = try load(peerURL, function: nil, units: s.computeUnits)
                    opens.append(Self.millis(t0, Self.now()))
                }
                let peerInput = try input(size: bundle.size, name: model!.modelDescription.inputDescriptionsByName.keys.first ?? "image")
                rec["latency_ms"] = latencyEntry(try timePredictions(model!, peerInput, s), s)
                rec["open_ms"] = Self.stats(opens)
                rec["peak_rss_bytes"] = orNull(Self.residentPeakBytes())
                rec["artifact_bytes"] = orNull(testBundle.url(forResource: peerName, withExtension: "mlpackage").flatMap(directoryBytes))
            } catch {
                rec["status"] = "failed"
                rec["error"] = "\(error)"
            }
            records.append(rec)
        }

        let date = ISO8601DateFormatter().string(from: Date())
        let device = Self.deviceModel()
        let doc: [String: Any] = [
            "schema": "pocketgan-bench", "schema_version": 1, "created": date,
            "command": "xcodebuild test -only-testing:PocketganBenchTests", "source": "ios",
            "machine": [
                "cpu_model": device, "cpu_flags": [String](), "logical_cpus": ProcessInfo.processInfo.processorCount,
                "usable_cpus": ProcessInfo.processInfo.activeProcessorCount, "threads": NSNull(),
                "memory_bytes": Int(ProcessInfo.processInfo.physicalMemory),
                "os": "iOS \(ProcessInfo.processInfo.operatingSystemVersionString)", "device": device,
                "python": NSNull(), "versions": ["pocketgan": bundle.manifest["pocketgan_version"] as? String ?? "?"],
                "date": date, "load_average": NSNull(),
            ] as [String: Any],
            "config": ["harness": "device_harness/ios", "rounds": s.rounds, "warmup": s.warmup, "repeats": s.repeats,
                       "compute_units": "\(s.computeUnits.rawValue)"] as [String: Any],
            "gemm": NSNull(), "models": [String: Any](), "records": records,
            "stability": ["tolerance": s.tolerance, "repeats": s.repeats, "checked": 0, "unstable": [String]()] as [String: Any],
            "claims": [[String: Any]](),
        ]
        let data = try JSONSerialization.data(withJSONObject: doc, options: [.prettyPrinted, .sortedKeys])
        let documents = FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]
        try data.write(to: documents.appendingPathComponent(Self.resultName), options: .atomic)
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
            models[concept] = try load(url, function: bundle.functions[concept] ?? concept, units: .all)
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
        let model = try load(url, function: bundle.functions[bundle.concepts[0]] ?? bundle.concepts[0], units: .all)
        let features = try input(size: bundle.size, name: bundle.inputName)
        _ = try model.prediction(from: features)
        measure(metrics: [XCTClockMetric(), XCTMemoryMetric()]) {
            _ = try? model.prediction(from: features)
        }
    }
}

/// JSON null for a missing value.
func orNull(_ value: Any?) -> Any { value ?? NSNull() }

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
