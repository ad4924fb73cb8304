import Foundation

// Pre- and post-processing, bit-exact with pocketgan/runtime/imaging.py (numpy + Pillow),
// web_demo/lib/imaging.js and the Android demo's core/Imaging.kt.
//
// `Imaging.toModelInput` letterboxes a photo of any size into the model's square input:
// scaled so the longer side is S (Pillow's bicubic resampling, ported with its fixed-point
// arithmetic), centred (the extra pixel of an odd border goes to the bottom / right), the
// border filled by reflection without repeating the edge (numpy "reflect"; "edge" when a
// border is not thinner than the photo), then x = pixel / 127.5 - 1 as Float32 NCHW RGB.
// `Imaging.fromModelOutput` crops the border off, pixel = rint((y + 1) * 127.5) clipped to
// 0...255, and resizes back to the photo's size with the same filter.

/// A packed 8-bit RGB image: `rgb[(y * width + x) * 3 + c]`.
public struct RGBImage: Equatable {
    public let width: Int
    public let height: Int
    public var rgb: [UInt8]

    public init(width: Int, height: Int, rgb: [UInt8]) throws {
        guard width > 0, height > 0 else { throw PocketganError.invalidImage("image is empty (\(width)x\(height))") }
        guard rgb.count == width * height * 3 else {
            throw PocketganError.invalidImage("image data has \(rgb.count) bytes, expected \(width * height * 3) (RGB, \(width)x\(height))")
        }
        self.width = width
        self.height = height
        self.rgb = rgb
    }

    /// From 32-bit pixels in memory (a CVPixelBuffer's kCVPixelFormatType_32BGRA, or RGBA):
    /// rows `bytesPerRow` apart; `bgra` says the byte order.
    public static func fromPixels32(_ base: UnsafeRawPointer, width: Int, height: Int, bytesPerRow: Int, bgra: Bool) throws -> RGBImage {
        var rgb = [UInt8](repeating: 0, count: width * height * 3)
        let (r, b) = bgra ? (2, 0) : (0, 2)
        let bytes = base.assumingMemoryBound(to: UInt8.self)
        rgb.withUnsafeMutableBufferPointer { out in
            for y in 0..<height {
                let row = y * bytesPerRow
                for x in 0..<width {
                    let s = row + x * 4
                    let o = (y * width + x) * 3
                    out[o] = bytes[s + r]
                    out[o + 1] = bytes[s + 1]
                    out[o + 2] = bytes[s + b]
                }
            }
        }
        return try RGBImage(width: width, height: height, rgb: rgb)
    }
}

/// Where the photo sits inside the model's square input (runtime/imaging.py `Placement`).
public struct Placement: Equatable {
    public let height: Int
    public let width: Int
    public let top: Int
    public let left: Int
    public let innerHeight: Int
    public let innerWidth: Int
    public let size: Int

    /// numpy.pad's mode: "reflect" when every border is thinner than the photo, else "edge".
    public var mode: String {
        max(top, size - innerHeight - top) < innerHeight && max(left, size - innerWidth - left) < innerWidth ? "reflect" : "edge"
    }

    /// The letterbox geometry of a `width` x `height` photo in an S = `size` square.
    public static func of(width: Int, height: Int, size: Int) throws -> Placement {
        guard width > 0, height > 0 else { throw PocketganError.invalidImage("image is empty (\(width)x\(height))") }
        let scale = Double(size) / Double(max(height, width))
        // Python's round(): halves go to the even neighbour
        let ih = max(1, Int((Double(height) * scale).rounded(.toNearestOrEven)))
        let iw = max(1, Int((Double(width) * scale).rounded(.toNearestOrEven)))
        return Placement(height: height, width: width, top: (size - ih) / 2, left: (size - iw) / 2,
                         innerHeight: ih, innerWidth: iw, size: size)
    }
}

public enum Imaging {
    /// float32 like numpy: (pixel as float32) / 127.5 - 1.0
    private static let normalize: [Float] = (0..<256).map { Float($0) / Float(127.5) - Float(1) }

    /// An RGB image -> (1, 3, size, size) Float32 NCHW in [-1, 1] and its placement.
    public static func toModelInput(_ image: RGBImage, size: Int) throws -> (tensor: [Float], placement: Placement) {
        let p = try Placement.of(width: image.width, height: image.height, size: size)
        let ih = p.innerHeight, iw = p.innerWidth
        let rgb = (ih != image.height || iw != image.width)
            ? Resample.bicubic(image.rgb, width: image.width, height: image.height, outWidth: iw, outHeight: ih)
            : image.rgb
        let reflect = p.mode == "reflect"
        let plane = size * size
        var tensor = [Float](repeating: 0, count: 3 * plane)
        let cols = (0..<size).map { index($0 - p.left, iw, reflect) }
        tensor.withUnsafeMutableBufferPointer { out in
            for y in 0..<size {
                let row = index(y - p.top, ih, reflect) * iw
                for x in 0..<size {
                    let i = (row + cols[x]) * 3
                    let o = y * size + x
                    out[o] = normalize[Int(rgb[i])]
                    out[plane + o] = normalize[Int(rgb[i + 1])]
                    out[2 * plane + o] = normalize[Int(rgb[i + 2])]
                }
            }
        }
        return (tensor, p)
    }

    /// (1, 3, S, S) Float32 in [-1, 1] -> the RGB image of the photo's size.
    public static func fromModelOutput(_ tensor: [Float], _ p: Placement) throws -> RGBImage {
        let size = p.size, plane = size * size
        guard tensor.count == 3 * plane else {
            throw PocketganError.invalidImage("model output has \(tensor.count) floats, expected \(3 * plane)")
        }
        let ih = p.innerHeight, iw = p.innerWidth
        var rgb = [UInt8](repeating: 0, count: ih * iw * 3)
        for y in 0..<ih {
            for x in 0..<iw {
                let src = (p.top + y) * size + p.left + x
                let o = (y * iw + x) * 3
                for c in 0..<3 {
                    // float32 like numpy: rint((y + 1.0) * 127.5), clipped to 0...255
                    let v = ((tensor[c * plane + src] + 1) * 127.5).rounded(.toNearestOrEven)
                    rgb[o + c] = v.isNaN || v < 0 ? 0 : v > 255 ? 255 : UInt8(v)
                }
            }
        }
        if ih == p.height && iw == p.width { return try RGBImage(width: iw, height: ih, rgb: rgb) }
        return try RGBImage(width: p.width, height: p.height,
                            rgb: Resample.bicubic(rgb, width: iw, height: ih, outWidth: p.width, outHeight: p.height))
    }

    /// PSNR in dB (RGB, peak 255) between two images of the same size; +infinity when identical.
    public static func psnr(_ a: RGBImage, _ b: RGBImage) throws -> Double {
        guard a.width == b.width, a.height == b.height else {
            throw PocketganError.invalidImage("size mismatch: \(a.width)x\(a.height) vs \(b.width)x\(b.height)")
        }
        var sum = 0.0
        for i in 0..<a.rgb.count {
            let d = Double(Int(a.rgb[i]) - Int(b.rgb[i]))
            sum += d * d
        }
        let mse = sum / Double(a.rgb.count)
        return mse == 0 ? .infinity : 10 * log10(255 * 255 / mse)
    }

    @inline(__always)
    private static func index(_ i: Int, _ n: Int, _ reflect: Bool) -> Int {
        if reflect {
            // numpy.pad(mode="reflect") for a border thinner than n: mirror without repeating the edge
            return i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i
        }
        return i < 0 ? 0 : i >= n ? n - 1 : i
    }
}

/// Pillow's ImagingResample (src/libImaging/Resample.c), bicubic (a = -0.5), 8 bits per
/// channel: two separable passes with 22-bit fixed-point coefficients, each rounded to 8
/// bits; Pillow 13's pass order (vertical first when the height shrinks by more than twice
/// as many pixels as the width).
public enum Resample {
    private static let precisionBits = 32 - 8 - 2
    private static let rounding = 1 << (precisionBits - 1)
    private static let fixedOne = Double(1 << precisionBits)

    private struct Coefficients {
        let ksize: Int
        var bounds: [Int]
        let kk: [Int]
    }

    private static func filter(_ x0: Double) -> Double {
        let a = -0.5
        let x = x0 < 0 ? -x0 : x0
        if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
        if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
        return 0
    }

    private static func coefficients(_ inSize: Int, _ outSize: Int) -> Coefficients {
        let scale = Double(inSize) / Double(outSize)
        let filterscale = scale < 1 ? 1 : scale
        let support = 2 * filterscale
        let ksize = Int(support.rounded(.up)) * 2 + 1
        var bounds = [Int](repeating: 0, count: outSize * 2)
        var kk = [Int](repeating: 0, count: outSize * ksize)
        var k = [Double](repeating: 0, count: ksize)
        let ss = 1 / filterscale
        for xx in 0..<outSize {
            let center = (Double(xx) + 0.5) * scale
            var ww = 0.0
            // C's (int) cast truncates toward zero, as Int(_:) does
            var xmin = Int(center - support + 0.5)
            if xmin < 0 { xmin = 0 }
            var xmax = Int(center + support + 0.5)
            if xmax > inSize { xmax = inSize }
            xmax -= xmin
            for x in 0..<xmax {
                let w = filter((Double(x + xmin) - center + 0.5) * ss)
                k[x] = w
                ww += w
            }
            for x in 0..<ksize {
                var w = x < xmax ? k[x] : 0
                if x < xmax && ww != 0 { w /= ww }
                kk[xx * ksize + x] = w < 0 ? Int(-0.5 + w * fixedOne) : Int(0.5 + w * fixedOne)
            }
            bounds[xx * 2] = xmin
            bounds[xx * 2 + 1] = xmax
        }
        return Coefficients(ksize: ksize, bounds: bounds, kk: kk)
    }

    @inline(__always)
    private static func clip8(_ ss: Int) -> UInt8 {
        let v = ss >> precisionBits
        return v < 0 ? 0 : v > 255 ? 255 : UInt8(v)
    }

    /// One pass of the separable resize over packed RGB bytes (`srcW` pixels a row): an image of
    /// `outW` x `rows` whose pixel (xx, yy) sums the taps of one coefficient row along one axis,
    /// rounded to 8 bits. Horizontal: coefficient row xx, taps along source row yy + `rowOffset`;
    /// vertical (`rowOffset` 0, `outW` = `srcW`): coefficient row yy, taps down source column xx.
    private static func resamplePass(_ src: [UInt8], srcW: Int, outW: Int, rows: Int, rowOffset: Int,
                                     horizontal: Bool, _ c: Coefficients) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: outW * rows * 3)
        let tapStride = horizontal ? 1 : srcW
        for yy in 0..<rows {
            for xx in 0..<outW {
                let j = horizontal ? xx : yy
                let first = c.bounds[j * 2], taps = c.bounds[j * 2 + 1], kb = j * c.ksize
                let base = (horizontal ? (yy + rowOffset) * srcW : xx) + first * tapStride
                var s0 = rounding, s1 = rounding, s2 = rounding
                for t in 0..<taps {
                    let w = c.kk[kb + t]
                    let i = (base + t * tapStride) * 3
                    s0 += Int(src[i]) * w
                    s1 += Int(src[i + 1]) * w
                    s2 += Int(src[i + 2]) * w
                }
                let o = (yy * outW + xx) * 3
                out[o] = clip8(s0)
                out[o + 1] = clip8(s1)
                out[o + 2] = clip8(s2)
            }
        }
        return out
    }

    /// Pillow's `Image.resize((outWidth, outHeight), Image.Resampling.BICUBIC)` of packed RGB bytes.
    public static func bicubic(_ rgb: [UInt8], width: Int, height: Int, outWidth: Int, outHeight: Int) -> [UInt8] {
        if outWidth == width && outHeight == height { return rgb }
        let needH = outWidth != width, needV = outHeight != height
        let dh = height - outHeight
        let horizontalFirst = !(dh > 0 && dh > (width - outWidth) * 2)
        var vert = needV || (needH && horizontalFirst) ? coefficients(height, outHeight) : nil
        let horiz = needH ? coefficients(width, outWidth) : nil
        if horizontalFirst {
            var src = rgb, srcW = width
            if needH, var v = vert, let h = horiz {
                // only the rows the vertical pass reads
                let yFirst = v.bounds[0]
                let yLast = v.bounds[outHeight * 2 - 2] + v.bounds[outHeight * 2 - 1]
                for i in 0..<outHeight { v.bounds[i * 2] -= yFirst }
                vert = v
                src = resamplePass(rgb, srcW: width, outW: outWidth, rows: yLast - yFirst, rowOffset: yFirst, horizontal: true, h)
                srcW = outWidth
            }
            if needV, let v = vert { return resamplePass(src, srcW: srcW, outW: srcW, rows: outHeight, rowOffset: 0, horizontal: false, v) }
            return src
        }
        let src = needV && vert != nil ? resamplePass(rgb, srcW: width, outW: width, rows: outHeight, rowOffset: 0, horizontal: false, vert!) : rgb
        if needH, let h = horiz { return resamplePass(src, srcW: width, outW: outWidth, rows: outHeight, rowOffset: 0, horizontal: true, h) }
        return src
    }
}
