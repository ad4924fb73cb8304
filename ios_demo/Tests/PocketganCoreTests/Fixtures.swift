import Foundation
import XCTest

@testable import PocketganCore

/// The repository's shared fixtures (tests/fixtures): the letterbox table written from
/// pocketgan.runtime.imaging and the manifests of real `pocketgan export --for ios/android`
/// bundles. POCKETGAN_FIXTURES overrides where they are; POCKETGAN_GOLDEN_BUNDLE names an
/// exported bundle for the tests that need its files.
enum Fixtures {
    static var dir: URL {
        if let path = ProcessInfo.processInfo.environment["POCKETGAN_FIXTURES"] { return URL(fileURLWithPath: path) }
        // ios_demo/Tests/PocketganCoreTests/Fixtures.swift -> <repo>/tests/fixtures
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("tests/fixtures")
    }

    static func data(_ name: String) throws -> Data { try Data(contentsOf: dir.appendingPathComponent(name)) }

    static func json(_ name: String) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: try data(name)) as? [String: Any])
    }

    /// The synthetic photo of letterbox_cases.json's `pattern`.
    static func pattern(_ width: Int, _ height: Int) throws -> RGBImage {
        var rgb = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                for c in 0..<3 { rgb[(y * width + x) * 3 + c] = UInt8((x * 37 + y * 91 + c * 53 + (x * y) % 29) % 256) }
            }
        }
        return try RGBImage(width: width, height: height, rgb: rgb)
    }

    /// Little-endian float32 bytes, as numpy's `astype("<f4").tobytes()`.
    static func floatBytes(_ values: [Float]) -> Data {
        var data = Data(capacity: values.count * 4)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        return data
    }

    static func goldenBundle() throws -> URL {
        guard let path = ProcessInfo.processInfo.environment["POCKETGAN_GOLDEN_BUNDLE"] else {
            throw XCTSkip("set POCKETGAN_GOLDEN_BUNDLE to an exported bundle (pocketgan export --for ios --out ios_bundle)")
        }
        return URL(fileURLWithPath: path)
    }
}
