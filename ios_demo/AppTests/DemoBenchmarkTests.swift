import CoreML
import PocketganCore
import XCTest

@testable import PocketganDemo

/// The app's benchmark: times the app's own CoreMLEngine (every concept's function, the
/// concept switch, the cold open; the iOS 18 multifunction package and the iOS 17 packages)
/// and writes pocketgan's benchmark schema (pocketgan/bench/schema.json) as
/// pocketgan-bench-ios-demo.json, attached to the test result and saved in Documents.
///
///     xcodebuild test -scheme PocketganDemo -destination 'platform=iOS,name=<iPhone>' \
///         -only-testing:PocketganDemoTests/DemoBenchmarkTests -resultBundlePath bench.xcresult
///     xcrun xcresulttool export attachments --path bench.xcresult --output-path bench_attachments
///     python -m pocketgan.bench.report bench_attachments/<...>/pocketgan-bench-ios-demo.json --out ios_app_results
///
/// Settings from the scheme's environment, as device_harness/ios: POCKETGAN_BENCH_ROUNDS (20),
/// POCKETGAN_BENCH_WARMUP (3), POCKETGAN_BENCH_REPEATS (2).
final class DemoBenchmarkTests: XCTestCase {
    static let resultName = "pocketgan-bench-ios-demo.json"

    /// Bytes of every file the manifest lists under a package path (what the app ships for it).
    static func packageBytes(_ manifest: BundleManifest, _ paths: [String]) -> Int {
        manifest.artifacts.filter { entry in paths.contains { entry.key.hasPrefix($0 + "/") } }.map { $0.value.bytes }.reduce(0, +)
    }

    func testBenchmarkEveryConceptFunction() throws {
        let settings = BenchSettings.fromEnvironment()
        let bundle = try PocketganBundle.open(try XCTUnwrap(Bundle.main.resourceURL))
        let manifest = bundle.manifest
        let coreml = try manifest.requireCoreML()
        var records: [[String: Any]] = []
        var variants: [Bool] = [true]  // the iOS 17 packages
        if #available(iOS 18.0, macOS 15.0, *) { variants.insert(false, at: 0) }  // the multifunction package first
        for forceIOS17 in variants {
            let probe = try? CoreMLEngine.open(bundle, forceIOS17: forceIOS17)
            guard let probe else { continue }
            let parity = try? probe.checkGolden().map(\.psnrDb).min()
            let mode = forceIOS17 ? (coreml.ios17?.conceptMode ?? "merged") : probe.conceptMode
            records.append(BenchReport.measure(
                manifest: manifest, mode: mode, variant: probe.variant.rawValue, settings: settings,
                open: { EngineBenchTarget(try CoreMLEngine.open(bundle, forceIOS17: forceIOS17)) },
                artifactBytes: Self.packageBytes(manifest, probe.packagePaths),
                parityPsnrDb: parity,
                rss: { BenchReport.residentPeakBytes() }))
        }
        XCTAssertFalse(records.isEmpty, "no Core ML model could be opened")
        let date = ISO8601DateFormatter().string(from: Date())
        let machine = BenchReport.machine(created: date, pocketganVersion: manifest.pocketganVersion)
        let doc = BenchReport.document(machine: machine, records: records, settings: settings, created: date,
                                       command: "xcodebuild test -only-testing:PocketganDemoTests/DemoBenchmarkTests",
                                       manifest: manifest)
        let data = try BenchReport.saveInDocuments(doc, name: Self.resultName)
        let attachment = XCTAttachment(data: data, uniformTypeIdentifier: "public.json")
        attachment.name = Self.resultName
        attachment.lifetime = .keepAlways
        add(attachment)
        for record in records {
            XCTAssertEqual(record["status"] as? String, "ok", "\(record["id"] ?? "?"): \(record["error"] ?? "")")
        }
    }
}
