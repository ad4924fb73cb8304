import Foundation

/// What the benchmark drives: one variant of the app's engine, opened and ready.
public protocol BenchTarget: AnyObject {
    var concepts: [String] { get }
    /// Makes `concept` the active one (Core ML: picks another loaded function's model).
    func setConcept(_ concept: String) throws
    /// One model call of the active concept.
    func run(_ input: [Float]) throws -> [Float]
}

public struct BenchSettings {
    public var rounds = 20
    public var warmup = 3
    public var repeats = 2
    public var openRounds = 3
    public var swapRounds = 2000
    public var tolerance = 0.10

    public init() {}

    /// Overridden by the test scheme's environment: POCKETGAN_BENCH_ROUNDS, _WARMUP, _REPEATS
    /// (read the same way by device_harness/ios/PocketganBenchTests.swift, which adds _COMPUTE_UNITS).
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) -> BenchSettings {
        var s = BenchSettings()
        if let v = env["POCKETGAN_BENCH_ROUNDS"].flatMap(Int.init) { s.rounds = v }
        if let v = env["POCKETGAN_BENCH_WARMUP"].flatMap(Int.init) { s.warmup = v }
        if let v = env["POCKETGAN_BENCH_REPEATS"].flatMap(Int.init) { s.repeats = v }
        return s
    }
}

/// Timing and pocketgan's benchmark schema (pocketgan/bench/schema.json: the document
/// `pocketgan bench` and the device harnesses write), so `python -m pocketgan.bench.report`
/// reads the app's run like any other.
public enum BenchReport {
    /// Median, quartiles (inclusive, as Python's statistics.quantiles), mean and extremes (ms).
    public static func stats(_ samples: [Double]) -> [String: Any] {
        precondition(!samples.isEmpty, "no samples")
        let xs = samples.sorted()
        func quantile(_ q: Double) -> Double {
            if xs.count == 1 { return xs[0] }
            let pos = q * Double(xs.count - 1)
            let lo = Int(pos.rounded(.down)), hi = min(lo + 1, xs.count - 1)
            return xs[lo] + (xs[hi] - xs[lo]) * (pos - Double(lo))
        }
        let q1 = quantile(0.25), q3 = quantile(0.75)
        return ["median": quantile(0.5), "iqr": q3 - q1, "q1": q1, "q3": q3,
                "mean": xs.reduce(0, +) / Double(xs.count), "min": xs[0], "max": xs[xs.count - 1], "rounds": xs.count]
    }

    /// (max - min) / min of repeated medians; 0 for one.
    public static func spread(_ medians: [Double]) -> Double {
        guard medians.count >= 2, let lo = medians.min(), let hi = medians.max() else { return 0 }
        return lo > 0 ? (hi - lo) / lo : .infinity
    }

    public static func latency(_ passes: [[Double]], warmup: Int, tolerance: Double) -> [String: Any] {
        var entry = stats(passes.flatMap { $0 })
        let medians = passes.map { stats($0)["median"] as! Double }
        let sp = spread(medians)
        entry["warmup"] = warmup
        entry["repeat_medians"] = medians
        entry["spread"] = sp.isFinite ? sp : 1e9
        entry["stable"] = sp <= tolerance
        return entry
    }

    /// `repeats` passes of `warmup` untimed calls and `rounds` timed calls of `call`: each pass's samples (ms).
    public static func timePasses(repeats: Int, warmup: Int, rounds: Int, clock: () -> UInt64 = BenchReport.now,
                                  _ call: () throws -> Void) rethrows -> [[Double]] {
        var passes: [[Double]] = []
        for _ in 0..<repeats {
            for _ in 0..<warmup { try call() }
            var samples: [Double] = []
            for _ in 0..<rounds {
                let t0 = clock()
                try call()
                samples.append(Double(clock() - t0) / 1e6)
            }
            passes.append(samples)
        }
        return passes
    }

    /// The records' and `models`' name of the bundle's generator: `pocketgan-<size>`.
    public static func modelName(_ manifest: BundleManifest) -> String {
        "pocketgan-\(manifest.generator.size ?? "custom")"
    }

    /// A record with every field the schema requires (null where not measured).
    public static func record(model: String, modelName: String, backend: String, precision: String, mode: String, size: Int) -> [String: Any] {
        [
            "id": "\(model)/\(backend)/\(precision)/\(mode)/\(size)", "model": model, "model_name": modelName,
            "backend": backend, "precision": precision, "concept_mode": mode, "size": size,
            "concept": NSNull(), "concepts": NSNull(), "status": "ok", "error": NSNull(),
            "latency_ms": NSNull(), "open_ms": NSNull(), "open_fresh_process_ms": NSNull(), "set_concept_ms": NSNull(),
            "peak_rss_bytes": NSNull(), "baseline_rss_bytes": NSNull(), "artifact_bytes": NSNull(),
            "parity_psnr_db": NSNull(), "flops": NSNull(), "achieved_gops": NSNull(), "gemm_peak_share": NSNull(),
            "ratios": [String: Any](), "extra": [String: Any](), "notes": [String](),
        ]
    }

    /// The monotonic clock the benchmarks read (ns).
    public static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// JSON null for a missing value.
    public static func orNull(_ value: Any?) -> Any { value ?? NSNull() }

    /// The process's peak resident memory (mach `resident_size_max`, bytes); nil where unknown.
    public static func residentPeakBytes() -> Int? {
        #if canImport(Darwin)
        var info = mach_task_basic_info()
        var count = mach_msg_type_number_t(MemoryLayout<mach_task_basic_info>.size / MemoryLayout<natural_t>.size)
        let kr = withUnsafeMutablePointer(to: &info) {
            $0.withMemoryRebound(to: integer_t.self, capacity: Int(count)) {
                task_info(mach_task_self_, task_flavor_t(MACH_TASK_BASIC_INFO), $0, &count)
            }
        }
        return kr == KERN_SUCCESS ? Int(info.resident_size_max) : nil
        #else
        return nil
        #endif
    }

    /// The hardware model (uname's machine, e.g. "iPhone16,1").
    public static func deviceModel() -> String {
        #if canImport(Darwin)
        var system = utsname()
        uname(&system)
        return withUnsafeBytes(of: &system.machine) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
        #else
        return "unknown"
        #endif
    }

    /// The results document's `machine`: this device, as the schema describes a phone.
    public static func machine(created: String, pocketganVersion: String?) -> [String: Any] {
        let device = deviceModel()
        let process = ProcessInfo.processInfo
        return [
            "cpu_model": device, "cpu_flags": [String](), "logical_cpus": process.processorCount,
            "usable_cpus": process.activeProcessorCount, "threads": NSNull(),
            "memory_bytes": Int(process.physicalMemory),
            "os": "iOS \(process.operatingSystemVersionString)", "device": device, "python": NSNull(),
            "versions": ["pocketgan": pocketganVersion ?? "?"], "date": created, "load_average": NSNull(),
        ]
    }

    /// Times one variant of the engine: `open` opens it (every concept's model loaded),
    /// `rss` reads the process's peak resident memory.
    public static func measure(
        manifest: BundleManifest,
        mode: String,
        variant: String,
        settings s: BenchSettings,
        open: () throws -> BenchTarget,
        artifactBytes: Int? = nil,
        parityPsnrDb: Double? = nil,
        rss: () -> Int? = { nil },
        clock: @escaping () -> UInt64 = BenchReport.now
    ) -> [String: Any] {
        let precision = manifest.targets.coreml?.precision ?? "fp16"
        var rec = record(model: "pocketgan", modelName: modelName(manifest), backend: "coreml",
                         precision: precision, mode: mode, size: manifest.imageSize)
        let baseline = rss()
        func ms(_ t0: UInt64) -> Double { Double(clock() - t0) / 1e6 }
        do {
            // cold open: every concept's model (MLModel(contentsOf:configuration:), a function each)
            var opens: [Double] = []
            var target: BenchTarget?
            for _ in 0..<s.openRounds {
                target = nil
                let t0 = clock()
                target = try open()
                opens.append(ms(t0))
            }
            guard let engine = target else { throw PocketganError.bundle("nothing opened") }
            let concepts = engine.concepts
            let input = (0..<manifest.io.input.elementCount).map { Float($0 % 255) / 127.5 - 1 }
            // set_concept: the swap between loaded functions, timed in batches of 10
            var swaps: [Double] = []
            var i = 0
            for _ in 0..<(s.swapRounds / 10) {
                let t0 = clock()
                for _ in 0..<10 {
                    try engine.setConcept(concepts[i % concepts.count])
                    i += 1
                }
                swaps.append(ms(t0) / 10)
            }
            // latency: the first concept, `repeats` passes of warmup + rounds
            func runPasses(_ repeats: Int) throws -> [[Double]] {
                try timePasses(repeats: repeats, warmup: s.warmup, rounds: s.rounds, clock: clock) { _ = try engine.run(input) }
            }
            try engine.setConcept(concepts[0])
            let passes = try runPasses(s.repeats)
            // every concept, one pass each
            var perConcept: [String: Double] = [:]
            for c in concepts {
                try engine.setConcept(c)
                let samples = try runPasses(1)[0]
                perConcept[c] = stats(samples)["median"] as? Double
            }
            // the first call after switching to another concept (what a chip tap costs the next frame)
            var afterSwitch: [Double] = []
            if concepts.count > 1 {
                for k in 0..<s.rounds {
                    try engine.setConcept(concepts[(k + 1) % concepts.count])
                    let t0 = clock()
                    _ = try engine.run(input)
                    afterSwitch.append(ms(t0))
                }
            }
            let lat = latency(passes, warmup: s.warmup, tolerance: s.tolerance)
            let median = lat["median"] as! Double
            let openStats = stats(opens), swapStats = stats(swaps)
            rec["concept"] = concepts[0]
            rec["concepts"] = concepts.count
            rec["latency_ms"] = lat
            rec["open_ms"] = openStats
            rec["set_concept_ms"] = swapStats
            rec["peak_rss_bytes"] = orNull(rss())
            rec["baseline_rss_bytes"] = orNull(baseline)
            rec["artifact_bytes"] = orNull(artifactBytes)
            rec["parity_psnr_db"] = orNull(parityPsnrDb.flatMap { $0.isFinite ? $0 : nil })
            if let macs = manifest.generator.macs {
                rec["flops"] = 2 * macs
                if median > 0 { rec["achieved_gops"] = Double(2 * macs) / (median / 1e3) / 1e9 }
            }
            rec["ratios"] = ["set_concept_vs_open": (swapStats["median"] as! Double) / (openStats["median"] as! Double)]
            var extra: [String: Any] = ["per_concept_median_ms": perConcept, "variant": variant]
            if !afterSwitch.isEmpty { extra["first_run_after_switch_ms"] = stats(afterSwitch) }
            rec["extra"] = extra
            rec["notes"] = [
                "measured in the iOS demo app's XCTest benchmark (ios_demo/AppTests): the app's CoreMLEngine",
                "variant \(variant): multifunction = one .mlpackage, a function per concept (MLModelConfiguration.functionName, iOS 18); ios17 = one package per concept",
                "set_concept: switching between loaded models; first_run_after_switch_ms: the next call",
                "peak RSS: the test process's resident_size_max after this group (cumulative)",
            ]
        } catch {
            rec["status"] = "failed"
            rec["error"] = "\(error)"
        }
        return rec
    }

    /// The results document (schema_version 1) around `records`; `harness` and `config` name who
    /// measured and its settings beyond `settings` (device_harness/ios: the compute units).
    public static func document(machine: [String: Any], records: [[String: Any]], settings: BenchSettings,
                                created: String, command: String?, manifest: BundleManifest?,
                                harness: String = "ios_demo (XCTest benchmark)", config: [String: Any] = [:]) -> [String: Any] {
        let checked = records.compactMap { $0["latency_ms"] as? [String: Any] }.filter { ($0["repeat_medians"] as? [Double])?.count ?? 0 >= 2 }
        let unstable = records.filter { r in
            guard let lat = r["latency_ms"] as? [String: Any], let medians = lat["repeat_medians"] as? [Double], medians.count >= 2 else { return false }
            return (lat["spread"] as? Double ?? 0) > settings.tolerance
        }.compactMap { $0["id"] as? String }
        var models: [String: Any] = [:]
        if let m = manifest {
            var entry: [String: Any] = ["family": "pocketgan", "parameters": orNull(m.generator.parameters)]
            if let macs = m.generator.macs { entry["flops"] = ["\(m.imageSize)": ["separate": 2 * macs, "merged": 2 * macs]] }
            models[modelName(m)] = entry
        }
        let settingsConfig: [String: Any] = ["harness": harness, "rounds": settings.rounds, "warmup": settings.warmup, "repeats": settings.repeats,
                                             "open_rounds": settings.openRounds, "swap_rounds": settings.swapRounds]
        return [
            "schema": "pocketgan-bench", "schema_version": 1, "created": created, "command": orNull(command),
            "source": "ios", "machine": machine,
            "config": settingsConfig.merging(config) { _, extra in extra },
            "gemm": NSNull(), "models": models, "records": records,
            "stability": ["tolerance": settings.tolerance, "repeats": settings.repeats, "checked": checked.count,
                          "unstable": unstable] as [String: Any],
            "claims": [[String: Any]](),
        ]
    }

    /// JSON text of a document (sorted keys, pretty-printed).
    public static func json(_ document: [String: Any]) throws -> Data {
        try JSONSerialization.data(withJSONObject: document, options: [.prettyPrinted, .sortedKeys])
    }

    /// Writes `document`'s JSON as `name` in the app's Documents folder (where the XCTest
    /// benchmarks leave it on the device) and returns it, for the test's attachment.
    public static func saveInDocuments(_ document: [String: Any], name: String) throws -> Data {
        let data = try json(document)
        let documents = FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]
        try data.write(to: documents.appendingPathComponent(name), options: .atomic)
        return data
    }
}
