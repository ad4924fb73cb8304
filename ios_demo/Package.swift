// swift-tools-version:5.9
// The pocketgan iOS demo's core: manifest, integrity, letterbox pre/post-processing, golden
// vectors and the benchmark schema, in plain Swift (Foundation, CryptoKit for SHA-256, and
// CoreGraphics where the platform has it) so `swift test` checks it on a Mac without a
// simulator. CryptoKit makes it Apple-only (iOS 17, macOS 14). The SwiftUI app (App/) and its
// XCTest benchmark (AppTests/) are built by the Xcode project (project.yml).
import PackageDescription

let package = Package(
    name: "PocketganCore",
    platforms: [.iOS(.v17), .macOS(.v14)],
    products: [
        .library(name: "PocketganCore", targets: ["PocketganCore"]),
        .executable(name: "pocketgan-verify", targets: ["pocketgan-verify"]),
    ],
    targets: [
        .target(name: "PocketganCore", path: "Sources/PocketganCore"),
        // checks an exported bundle's files against its manifest (the Xcode pre-build step)
        .executableTarget(name: "pocketgan-verify", dependencies: ["PocketganCore"], path: "Sources/pocketgan-verify"),
        .testTarget(name: "PocketganCoreTests", dependencies: ["PocketganCore"], path: "Tests/PocketganCoreTests"),
    ]
)
