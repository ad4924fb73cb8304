import Foundation

/// Every error of the pocketgan core: the same kinds as the Python, web and Android runtimes.
public enum PocketganError: Error, LocalizedError, Equatable {
    /// The manifest is malformed, or the bundle lacks what this app needs.
    case bundle(String)
    /// The bundle was written by a newer pocketgan (`format_version` above what this app reads).
    case unsupportedFormat(String)
    /// A file's size or sha256 differs from the manifest's `artifacts`, or it is not listed.
    case checksum(String)
    /// A concept name that is not in the manifest.
    case unknownConcept(String, known: [String])
    /// An image the pre-processing cannot take, or a PNG it cannot decode.
    case invalidImage(String)

    public var errorDescription: String? {
        switch self {
        case .bundle(let m), .unsupportedFormat(let m), .checksum(let m), .invalidImage(let m):
            return m
        case .unknownConcept(let name, let known):
            return "unknown concept '\(name)'; the bundle has \(known.joined(separator: ", "))"
        }
    }
}
