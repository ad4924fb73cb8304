import XCTest

@testable import PocketganCore

/// Strength and blending: the calibration table agrees with the Python runtime
/// (tests/fixtures/strength_cases.json); mixes are validated and become the mix function's
/// weight vector in the manifest's order.
final class ConceptMixTests: XCTestCase {
    func testStrengthWeightsMatchThePythonRuntime() throws {
        let cases = try XCTUnwrap(try Fixtures.json("strength_cases.json")["cases"] as? [[String: Any]])
        XCTAssertGreaterThanOrEqual(cases.count, 10)
        for c in cases {
            let curve = c["curve"] as? [Double]
            let strength = try XCTUnwrap(c["strength"] as? Double)
            let weight = try XCTUnwrap(c["weight"] as? Double)
            XCTAssertEqual(ConceptMix.strengthWeight(curve: curve, strength: strength), weight, accuracy: 1e-9, "\(c)")
        }
    }

    func testMixesBecomeTheFunctionsWeights() throws {
        var raw = try Fixtures.json("app_manifests/ios.json")
        var targets = try XCTUnwrap(raw["targets"] as? [String: Any])
        var coreml = try XCTUnwrap(targets["coreml"] as? [String: Any])
        let names = try XCTUnwrap((raw["concepts"] as? [[String: Any]])?.compactMap { $0["name"] as? String })
        coreml["mix"] = ["function": "mix_function", "weights_input": "weights", "concepts": names]
        targets["coreml"] = coreml
        raw["targets"] = targets
        let m = try BundleManifest.parse(try JSONSerialization.data(withJSONObject: raw))
        let fade = try ConceptMix.crossFade(m, from: names[0], to: names[1], t: 0.4)
        var want = [Float](repeating: 0, count: names.count)
        want[0] = 0.6
        want[1] = 0.4
        XCTAssertEqual(try ConceptMix.weightVector(m, fade), want)
        XCTAssertThrowsError(try ConceptMix.strength(m, concept: names[0], strength: 1.6))
        XCTAssertThrowsError(try ConceptMix.weightVector(m, [names[0]: 1.0, names[1]: 0.6]))
        XCTAssertThrowsError(try ConceptMix.weightVector(m, ["nope": 0.5]))
    }
}
