import Foundation

/// Frames per second over the last frames (exponential moving average of the intervals).
public final class FpsMeter {
    private let smoothing: Double
    private let clock: () -> UInt64
    private var last: UInt64 = 0
    private var meanIntervalNs = 0.0

    public init(smoothing: Double = 0.1, clock: @escaping () -> UInt64 = { DispatchTime.now().uptimeNanoseconds }) {
        self.smoothing = smoothing
        self.clock = clock
    }

    /// Call once per displayed frame; returns the current rate.
    @discardableResult
    public func tick() -> Double {
        let now = clock()
        if last != 0 {
            let dt = Double(now - last)
            meanIntervalNs = meanIntervalNs == 0 ? dt : meanIntervalNs + smoothing * (dt - meanIntervalNs)
        }
        last = now
        return fps
    }

    public var fps: Double { meanIntervalNs > 0 ? 1e9 / meanIntervalNs : 0 }
}
