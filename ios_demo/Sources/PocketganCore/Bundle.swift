import CryptoKit
import Foundation

/// A manifest and the folder of its files: every read is checked against the manifest's
/// `artifacts` (size and sha256); a mismatch or an unlisted path is `PocketganError.checksum`.
public struct PocketganBundle {
    public static let manifestName = "manifest.json"

    public let root: URL
    public let manifest: BundleManifest

    public init(root: URL, manifest: BundleManifest) {
        self.root = root
        self.manifest = manifest
    }

    /// Opens the bundle folder at `root` (reads and checks manifest.json).
    public static func open(_ root: URL) throws -> PocketganBundle {
        let data: Data
        do {
            data = try Data(contentsOf: root.appendingPathComponent(manifestName))
        } catch {
            throw PocketganError.bundle("no \(manifestName) in \(root.path): export one with `pocketgan export --for ios`")
        }
        return PocketganBundle(root: root, manifest: try BundleManifest.parse(data))
    }

    /// The URL of a manifest path.
    public func url(_ path: String) throws -> URL {
        try BundleManifest.checkPath(path)
        return path.split(separator: "/").reduce(root) { $0.appendingPathComponent(String($1)) }
    }

    /// The file at `path`, verified.
    public func read(_ path: String) throws -> Data {
        let artifact = try self.artifact(path)
        let data: Data
        do {
            data = try Data(contentsOf: try url(path))
        } catch let e as PocketganError {
            throw e
        } catch {
            throw PocketganError.checksum("\(path) is listed in the manifest but cannot be read: \(error.localizedDescription)")
        }
        try check(path, artifact, SHA256.hex(data), data.count)
        return data
    }

    /// Verifies the file at `path` without keeping it (streamed).
    public func verify(_ path: String) throws {
        let artifact = try self.artifact(path)
        guard let stream = InputStream(url: try url(path)) else {
            throw PocketganError.checksum("\(path) is listed in the manifest but missing")
        }
        stream.open()
        defer { stream.close() }
        var hasher = SHA256()
        var total = 0
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = stream.read(&chunk, maxLength: chunk.count)
            if n < 0 { throw PocketganError.checksum("\(path) cannot be read") }
            if n == 0 { break }
            hasher.update(data: chunk[0..<n])
            total += n
        }
        try check(path, artifact, SHA256.hex(digest: hasher.finalize()), total)
    }

    /// Verifies every listed file under a directory artifact such as an `.mlpackage`.
    public func verifyTree(_ directory: String) throws {
        let prefix = try BundleManifest.checkPath(directory) + "/"
        let files = manifest.artifacts.keys.filter { $0.hasPrefix(prefix) }.sorted()
        guard !files.isEmpty else { throw PocketganError.checksum("\(directory) has no files listed in the manifest's artifacts") }
        for f in files { try verify(f) }
    }

    /// Verifies every artifact the manifest lists.
    public func verifyAll() throws {
        for path in manifest.artifacts.keys.sorted() { try verify(path) }
    }

    private func artifact(_ path: String) throws -> BundleManifest.Artifact {
        try BundleManifest.checkPath(path)
        guard let a = manifest.artifacts[path] else {
            throw PocketganError.checksum("\(path) is not listed in the manifest's artifacts")
        }
        return a
    }

    private func check(_ path: String, _ artifact: BundleManifest.Artifact, _ sha: String, _ size: Int) throws {
        if size != artifact.bytes { throw PocketganError.checksum("\(path) has \(size) bytes, the manifest says \(artifact.bytes)") }
        if sha != artifact.sha256 { throw PocketganError.checksum("\(path) has sha256 \(sha), the manifest says \(artifact.sha256)") }
    }
}
