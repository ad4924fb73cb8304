import CryptoKit
import Foundation

/// Hex digests in the form the manifest's `artifacts[path].sha256` uses (64 lowercase hex
/// digits), computed by CryptoKit's `SHA256` (iOS 17 and macOS 14, the package's platforms,
/// have it). One call: `SHA256.hex(data)`. Streamed: `var h = SHA256()`, `h.update(data:)` as
/// often as needed, then `SHA256.hex(digest: h.finalize())`.
extension SHA256 {
    /// The lowercase hex SHA-256 of `data`.
    public static func hex<D: DataProtocol>(_ data: D) -> String {
        hex(digest: hash(data: data))
    }

    /// The lowercase hex form of a digest (of `hash(data:)` or of a streamed `finalize()`).
    public static func hex(digest: SHA256.Digest) -> String {
        digest.map { String(format: "%02x", $0) }.joined()
    }
}
