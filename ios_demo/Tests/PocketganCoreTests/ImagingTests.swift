import CryptoKit
import XCTest

@testable import PocketganCore

/// Letterboxing against tests/fixtures/letterbox_cases.json (written from pocketgan.runtime.imaging).
final class ImagingTests: XCTestCase {
    func rows(_ key: String) throws -> [[String: Any]] {
        try XCTUnwrap(try Fixtures.json("letterbox_cases.json")[key] as? [[String: Any]])
    }

    func testGeometryMatchesThePythonRuntime() throws {
        let geometry = try rows("geometry")
        XCTAssertGreaterThanOrEqual(geometry.count, 20)
        for g in geometry {
            let w = g["width"] as! Int, h = g["height"] as! Int, s = g["size"] as! Int
            let p = try Placement.of(width: w, height: h, size: s)
            let at = "\(w)x\(h) in \(s)"
            XCTAssertEqual(p.innerWidth, g["inner_width"] as? Int, at)
            XCTAssertEqual(p.innerHeight, g["inner_height"] as? Int, at)
            XCTAssertEqual(p.top, g["top"] as? Int, at)
            XCTAssertEqual(p.left, g["left"] as? Int, at)
            XCTAssertEqual(p.mode, g["mode"] as? String, at)
        }
    }

    func testPixelsMatchThePythonRuntimeBitForBit() throws {
        let pixels = try rows("pixels")
        XCTAssertGreaterThanOrEqual(pixels.count, 10)
        for case_ in pixels {
            let w = case_["width"] as! Int, h = case_["height"] as! Int, s = case_["size"] as! Int
            let at = "\(w)x\(h) in \(s)"
            let image = try Fixtures.pattern(w, h)
            XCTAssertEqual(SHA256.hex(image.rgb), case_["input_sha256"] as? String, at)
            let x = try Imaging.toModelInput(image, size: s)
            XCTAssertEqual(SHA256.hex(Fixtures.floatBytes(x.tensor)), case_["tensor_sha256"] as? String, at)
            let back = try Imaging.fromModelOutput(x.tensor, x.placement)
            XCTAssertEqual([back.width, back.height], [w, h], at)
            XCTAssertEqual(SHA256.hex(back.rgb), case_["output_sha256"] as? String, at)
        }
    }

    func testNormalisesAndClips() throws {
        let white = try Imaging.toModelInput(try RGBImage(width: 2, height: 2, rgb: [UInt8](repeating: 255, count: 12)), size: 2)
        XCTAssertEqual(white.tensor, [Float](repeating: 1, count: 12))
        let p = try Placement.of(width: 1, height: 1, size: 1)
        XCTAssertEqual(try Imaging.fromModelOutput([5, -3, .infinity], p).rgb, [255, 0, 255])
    }

    func testRefusesEmptyOrMisSizedImages() {
        XCTAssertThrowsError(try RGBImage(width: 0, height: 3, rgb: []))
        XCTAssertThrowsError(try RGBImage(width: 2, height: 2, rgb: [UInt8](repeating: 0, count: 11)))
    }

    func testBGRAFrames() throws {
        // 2x1 BGRA with 4 bytes of row padding
        let bytes: [UInt8] = [1, 2, 3, 255, 4, 5, 6, 255, 0, 0, 0, 0]
        let image = try bytes.withUnsafeBytes { try RGBImage.fromPixels32($0.baseAddress!, width: 2, height: 1, bytesPerRow: 12, bgra: true) }
        XCTAssertEqual(image.rgb, [3, 2, 1, 6, 5, 4])
    }

    func testPSNR() throws {
        let a = try Fixtures.pattern(8, 8)
        XCTAssertEqual(try Imaging.psnr(a, a), .infinity)
        var b = a
        b.rgb[0] = b.rgb[0] &+ 1
        XCTAssertEqual(try Imaging.psnr(a, b), 10 * log10(255.0 * 255.0 * 192), accuracy: 1e-9)
    }

    func testFpsMeter() {
        var now: UInt64 = 1
        let meter = FpsMeter(smoothing: 0.5) { now }
        XCTAssertEqual(meter.tick(), 0)
        now += 50_000_000
        XCTAssertEqual(meter.tick(), 20, accuracy: 1e-9)
    }
}
