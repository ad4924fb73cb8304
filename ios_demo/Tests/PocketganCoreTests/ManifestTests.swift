import CryptoKit
import XCTest

@testable import PocketganCore

/// The manifest of a real `pocketgan export --for ios` app bundle (tests/fixtures/app_manifests/ios.json).
final class ManifestTests: XCTestCase {
    func raw() throws -> [String: Any] { try Fixtures.json("app_manifests/ios.json") }

    func parse(_ object: [String: Any]) throws -> BundleManifest {
        try BundleManifest.parse(try JSONSerialization.data(withJSONObject: object))
    }

    func testReadsTheExportedIOSBundle() throws {
        let raw = try raw()
        let m = try BundleManifest.parse(try Fixtures.data("app_manifests/ios.json"))
        let coreml = try XCTUnwrap((raw["targets"] as? [String: Any])?["coreml"] as? [String: Any])
        XCTAssertEqual(m.formatVersion, 1)
        XCTAssertEqual(m.conceptNames, (raw["concepts"] as? [[String: Any]])?.compactMap { $0["name"] as? String })
        XCTAssertEqual(m.io.input.shape, [1, 3, m.imageSize, m.imageSize])
        let target = try m.requireCoreML()
        XCTAssertEqual(target.package, coreml["package"] as? String)
        XCTAssertEqual(target.functions, coreml["functions"] as? [String: String])
        XCTAssertEqual(target.inputs.first?.name, m.io.input.name)
        XCTAssertEqual(target.outputs.first?.name, m.io.output.name)
        for concept in m.conceptNames {
            XCTAssertEqual(try m.functionName(concept), (coreml["functions"] as? [String: String])?[concept])
            let path = try m.ios17Package(concept)
            XCTAssertTrue(m.artifacts.keys.contains { $0.hasPrefix(path + "/") }, path)
        }
        XCTAssertEqual(m.coreMLThresholdDb, 35)
        XCTAssertTrue(m.concepts.allSatisfy { $0.golden != nil })
    }

    func testUnknownConceptsAreTypedErrors() throws {
        let m = try BundleManifest.parse(try Fixtures.data("app_manifests/ios.json"))
        XCTAssertThrowsError(try m.functionName("no-such-concept")) { error in
            guard case PocketganError.unknownConcept = error else { return XCTFail("\(error)") }
        }
    }

    func testRefusesANewerFormatWithAnUpgradeMessage() throws {
        var raw = try raw()
        raw["format_version"] = 3
        XCTAssertThrowsError(try parse(raw)) { error in
            guard case PocketganError.unsupportedFormat(let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("upgrade"))
        }
    }

    func testRefusesWhatIsNotABundleAndPathsOutsideIt() throws {
        var raw = try raw()
        raw["format"] = "something-else"
        XCTAssertThrowsError(try parse(raw))
        for bad in ["../x", "/abs", "a//b", "a\\b", "./a", ""] {
            XCTAssertThrowsError(try BundleManifest.checkPath(bad), bad)
        }
    }

    func testABundleWithoutCoreMLSaysHowToExportOne() throws {
        let m = try BundleManifest.parse(try Fixtures.data("app_manifests/android.json"))
        XCTAssertThrowsError(try m.requireCoreML()) { error in
            XCTAssertTrue((error as? LocalizedError)?.errorDescription?.contains("--for ios") ?? false)
        }
    }

    /// CryptoKit's digests in the manifest's hex form (FIPS 180-4 example vectors).
    func testSHA256HexKnownVectors() {
        XCTAssertEqual(SHA256.hex(Data()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(Data("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        // two blocks, and streamed in odd pieces
        let long = Data("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
        XCTAssertEqual(SHA256.hex(long), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        var hasher = SHA256()
        hasher.update(data: long.prefix(7))
        hasher.update(data: long.dropFirst(7))
        XCTAssertEqual(SHA256.hex(digest: hasher.finalize()), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    func testEveryArtifactOfAnExportedBundleVerifies() throws {
        let bundle = try PocketganBundle.open(try Fixtures.goldenBundle())
        try bundle.verifyAll()
    }
}
