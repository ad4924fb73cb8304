import XCTest

@testable import PocketganCore

final class GoldenTests: XCTestCase {
    func testSummary() {
        let results = [GoldenCheck.Result(concept: "a", psnrDb: 40, thresholdDb: 35, modelMs: 1),
                       GoldenCheck.Result(concept: "b", psnrDb: 20, thresholdDb: 35, modelMs: 1)]
        XCTAssertEqual(GoldenCheck.summary(results), "PASS a: 40.0 dB (>= 35.0 dB)\nFAIL b: 20.0 dB (>= 35.0 dB)")
        XCTAssertEqual(GoldenCheck.summary([]), "the bundle has no golden vectors")
    }

    #if canImport(CoreGraphics)
    /// The golden vectors of a real export, with a model that returns the expected output
    /// letterboxed (what a perfect model gives): PNG decoding, letterbox and crop are exact.
    func testGoldenVectorsRoundTripExactly() throws {
        let bundle = try PocketganBundle.open(try Fixtures.goldenBundle())
        let size = bundle.manifest.imageSize
        var expected: [String: [Float]] = [:]
        for concept in bundle.manifest.concepts {
            guard let golden = concept.golden else { continue }
            let image = try RGBImage.decodePNG(try bundle.read(golden.output))
            XCTAssertEqual([image.width, image.height], [size, 3 * size / 8])
            expected[concept.name] = try Imaging.toModelInput(image, size: size).tensor
        }
        let results = try GoldenCheck.run(bundle: bundle, decode: RGBImage.decodePNG) { concept, _ in expected[concept]! }
        XCTAssertEqual(results.map(\.concept), bundle.manifest.conceptNames)
        XCTAssertTrue(results.allSatisfy { $0.psnrDb == .infinity }, GoldenCheck.summary(results))
        let wrong = try GoldenCheck.run(bundle: bundle, decode: RGBImage.decodePNG) { _, x in x.map { -$0 } }
        XCTAssertTrue(wrong.allSatisfy { !$0.passed })
    }
    #endif
}
