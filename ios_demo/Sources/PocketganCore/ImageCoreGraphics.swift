#if canImport(CoreGraphics)
import CoreGraphics
import Foundation

extension RGBImage {
    /// Decodes a PNG with CoreGraphics and reads its pixels as stored: no colour management,
    /// no premultiplication, so the golden vectors give the same bytes as Pillow.
    public static func decodePNG(_ data: Data) throws -> RGBImage {
        guard let provider = CGDataProvider(data: data as CFData),
              let image = CGImage(pngDataProviderSource: provider, decode: nil, shouldInterpolate: false, intent: .defaultIntent) else {
            throw PocketganError.invalidImage("not a PNG CoreGraphics can decode")
        }
        return try fromCGImage(image)
    }

    /// The stored pixels of an 8-bit RGB(A) or greyscale CGImage.
    public static func fromCGImage(_ image: CGImage) throws -> RGBImage {
        guard image.bitsPerComponent == 8, let pixels = image.dataProvider?.data as Data? else {
            throw PocketganError.invalidImage("only 8-bit images are supported (got \(image.bitsPerComponent) bits per component)")
        }
        let width = image.width, height = image.height, stride = image.bytesPerRow
        let channels = image.bitsPerPixel / 8
        let alpha = image.alphaInfo
        let alphaFirst = alpha == .first || alpha == .premultipliedFirst || alpha == .noneSkipFirst
        let littleEndian = image.bitmapInfo.contains(.byteOrder32Little)
        var rgb = [UInt8](repeating: 0, count: width * height * 3)
        pixels.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            for y in 0..<height {
                for x in 0..<width {
                    let s = y * stride + x * channels
                    let o = (y * width + x) * 3
                    switch channels {
                    case 1, 2:
                        rgb[o] = raw[s]; rgb[o + 1] = raw[s]; rgb[o + 2] = raw[s]
                    case 3:
                        rgb[o] = raw[s]; rgb[o + 1] = raw[s + 1]; rgb[o + 2] = raw[s + 2]
                    default:
                        // 32-bit pixels: A R G B / R G B A in memory, reversed when little-endian
                        var px = [raw[s], raw[s + 1], raw[s + 2], raw[s + 3]]
                        if littleEndian { px.reverse() }
                        let first = alphaFirst ? 1 : 0
                        rgb[o] = px[first]; rgb[o + 1] = px[first + 1]; rgb[o + 2] = px[first + 2]
                    }
                }
            }
        }
        return try RGBImage(width: width, height: height, rgb: rgb)
    }

    /// A CGImage of these pixels (sRGB, opaque), for display.
    public func makeCGImage() -> CGImage? {
        guard let provider = CGDataProvider(data: Data(rgb) as CFData) else { return nil }
        return CGImage(width: width, height: height, bitsPerComponent: 8, bitsPerPixel: 24, bytesPerRow: width * 3,
                       space: CGColorSpace(name: CGColorSpace.sRGB) ?? CGColorSpaceCreateDeviceRGB(),
                       bitmapInfo: CGBitmapInfo(rawValue: CGImageAlphaInfo.none.rawValue),
                       provider: provider, decode: nil, shouldInterpolate: true, intent: .defaultIntent)
    }
}
#endif
