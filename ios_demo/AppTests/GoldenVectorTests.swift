import CoreML
import PocketganCore
import XCTest

@testable import PocketganDemo

/// On a simulator or a device (hosted in the app, so the bundle's resources and the models
/// Xcode compiled are there): every concept's Core ML function against its golden vectors.
final class GoldenVectorTests: XCTestCase {
    func bundle() throws -> PocketganBundle {
        try PocketganBundle.open(try XCTUnwrap(Bundle.main.resourceURL))
    }

    func testMultifunctionPackagePassesTheGoldenVectors() throws {
        guard #available(iOS 18.0, macOS 15.0, *) else { throw XCTSkip("multifunction Core ML models need iOS 18") }
        let engine = try CoreMLEngine.open(try bundle(), computeUnits: .cpuOnly)
        XCTAssertEqual(engine.variant, .multifunction)
        let results = try engine.checkGolden()
        XCTAssertEqual(results.map(\.concept), engine.concepts)
        XCTAssertTrue(results.allSatisfy(\.passed), GoldenCheck.summary(results))
    }

    func testIOS17PackagesPassTheGoldenVectors() throws {
        let engine = try CoreMLEngine.open(try bundle(), computeUnits: .cpuOnly, forceIOS17: true)
        XCTAssertEqual(engine.variant, .ios17)
        let results = try engine.checkGolden()
        XCTAssertTrue(results.allSatisfy(\.passed), GoldenCheck.summary(results))
    }

    func testSwitchingConceptsNeedsNoReload() throws {
        let engine = try CoreMLEngine.open(try bundle())
        let x = (0..<(3 * engine.imageSize * engine.imageSize)).map { Float($0 % 255) / 127.5 - 1 }
        var outputs: [[Float]] = []
        for concept in engine.concepts {
            try engine.setConcept(concept)
            outputs.append(try engine.runTensor(x))
        }
        XCTAssertNotEqual(outputs[0], outputs[1])
        XCTAssertThrowsError(try engine.setConcept("not-a-concept"))
    }
}
