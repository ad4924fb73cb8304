import XCTest

@testable import PocketganCore

final class BenchReportTests: XCTestCase {
    func testStatsLikePythonsStatisticsModule() {
        let s = BenchReport.stats([10, 2, 4, 1, 3])
        XCTAssertEqual(s["median"] as? Double, 3)
        XCTAssertEqual(s["q1"] as? Double, 2)
        XCTAssertEqual(s["q3"] as? Double, 4)
        XCTAssertEqual(s["mean"] as? Double, 4)
        XCTAssertEqual(s["rounds"] as? Int, 5)
        XCTAssertEqual(BenchReport.spread([2, 3]), 0.5, accuracy: 1e-12)
    }

    func testTimePassesWarmsUpThenTimesEveryRound() {
        var t: UInt64 = 0
        var calls = 0
        let passes = BenchReport.timePasses(repeats: 2, warmup: 1, rounds: 3, clock: { t }) {
            calls += 1
            t += 2_000_000
        }
        XCTAssertEqual(calls, 8)  // 2 x (1 warmup + 3 rounds)
        XCTAssertEqual(passes, [[2, 2, 2], [2, 2, 2]])
    }

    /// What device_harness/ios writes: its name and compute units in `config`, this device in `machine`.
    func testTheHarnessesDocument() throws {
        let created = "2026-01-01T00:00:00Z"
        let doc = BenchReport.document(machine: BenchReport.machine(created: created, pocketganVersion: nil), records: [],
                                       settings: BenchSettings(), created: created, command: nil, manifest: nil,
                                       harness: "device_harness/ios", config: ["compute_units": "2"])
        let config = try XCTUnwrap(doc["config"] as? [String: Any])
        XCTAssertEqual(config["harness"] as? String, "device_harness/ios")
        XCTAssertEqual(config["compute_units"] as? String, "2")
        XCTAssertEqual(config["rounds"] as? Int, 20)
        let machine = try XCTUnwrap(doc["machine"] as? [String: Any])
        XCTAssertEqual(machine["date"] as? String, created)
        XCTAssertEqual((machine["versions"] as? [String: String])?["pocketgan"], "?")
        XCTAssertFalse((machine["device"] as? String ?? "").isEmpty)
    }

    /// A fake engine on a fake clock: every call takes 5 ms, a switch 0.01 ms.
    final class FakeTarget: BenchTarget {
        let concepts: [String]
        var clock: UnsafeMutablePointer<UInt64>
        init(_ concepts: [String], _ clock: UnsafeMutablePointer<UInt64>) { self.concepts = concepts; self.clock = clock }
        func setConcept(_ concept: String) throws { clock.pointee += 10_000 }
        func run(_ input: [Float]) throws -> [Float] { clock.pointee += 5_000_000; return input }
    }

    func testMeasuresAndWritesTheSharedSchema() throws {
        let manifest = try BundleManifest.parse(try Fixtures.data("app_manifests/ios.json"))
        let clock = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
        defer { clock.deallocate() }
        clock.pointee = 1
        var settings = BenchSettings()
        settings.rounds = 4
        settings.warmup = 1
        settings.openRounds = 2
        settings.swapRounds = 20
        let record = BenchReport.measure(
            manifest: manifest, mode: "separate", variant: "multifunction", settings: settings,
            open: { clock.pointee += 40_000_000; return FakeTarget(manifest.conceptNames, clock) },
            artifactBytes: 1234, parityPsnrDb: .infinity, rss: { 1 << 20 }, clock: { clock.pointee })
        XCTAssertEqual(record["status"] as? String, "ok")
        XCTAssertEqual(record["id"] as? String, "pocketgan/coreml/fp16/separate/\(manifest.imageSize)")
        XCTAssertEqual((record["latency_ms"] as? [String: Any])?["median"] as? Double ?? 0, 5, accuracy: 1e-9)
        XCTAssertEqual((record["open_ms"] as? [String: Any])?["median"] as? Double ?? 0, 40, accuracy: 1e-9)
        XCTAssertTrue(record["parity_psnr_db"] is NSNull)
        let doc = BenchReport.document(machine: ["cpu_model": "test"], records: [record], settings: settings,
                                       created: "2026-01-01T00:00:00Z", command: nil, manifest: manifest)
        let data = try BenchReport.json(doc)
        let back = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        XCTAssertEqual(back["schema"] as? String, "pocketgan-bench")
        XCTAssertEqual(back["source"] as? String, "ios")
        if let out = ProcessInfo.processInfo.environment["POCKETGAN_BENCH_SAMPLE_OUT"] {
            try data.write(to: URL(fileURLWithPath: out))
        }
    }
}
