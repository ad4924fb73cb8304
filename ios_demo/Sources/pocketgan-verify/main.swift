// pocketgan-verify BUNDLE_DIR [--plan]: checks an exported bundle before Xcode builds it into
// the app. Reads manifest.json (refusing a newer format_version), verifies the size and sha256
// of every file it lists (the .mlpackage files too, which the app can no longer check once they
// are compiled) and prints what the iOS app will use. With --plan it prints, on stdout, what
// scripts/embed_bundle.sh puts into the app, every path taken from the manifest:
//   copy <path>       a file the app reads as it is (manifest.json, the golden vectors)
//   compile <path>    a Core ML package to compile into <name>.mlmodelc
// Exit status 1 on any error.
import Foundation
import PocketganCore

func fail(_ message: String, _ status: Int32 = 1) -> Never {
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    exit(status)
}

func say(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }

var arguments = Array(CommandLine.arguments.dropFirst())
let plan = arguments.contains("--plan")
arguments.removeAll { $0 == "--plan" }
guard arguments.count == 1 else {
    fail("usage: pocketgan-verify BUNDLE_DIR [--plan]   (pocketgan export --for ios --out ios_bundle)", 2)
}
do {
    let bundle = try PocketganBundle.open(URL(fileURLWithPath: arguments[0], isDirectory: true))
    try bundle.verifyAll()
    let m = bundle.manifest
    let coreml = try m.requireCoreML()
    say("pocketgan bundle OK: \(m.artifacts.count) files verified, format_version \(m.formatVersion), \(m.imageSize)x\(m.imageSize)")
    say("  concepts: \(m.conceptNames.joined(separator: ", "))")
    var packages: [String] = []
    for package in [coreml.package, coreml.mergedPackage].compactMap({ $0 }) {
        say("  iOS 18: \(package), functions \(m.conceptNames.map { coreml.functions[$0] ?? "?" }.joined(separator: ", "))")
        packages.append(package)
    }
    if let fallback = coreml.ios17 {
        say("  iOS 17: \(fallback.packages.count) packages (\(fallback.conceptMode))")
        packages += try m.conceptNames.map { try m.ios17Package($0) }
    }
    // compiled models land side by side as <name>.mlmodelc: their names must differ
    let names = packages.map { (($0 as NSString).lastPathComponent as NSString).deletingPathExtension }
    if Set(names).count != names.count { fail("two Core ML packages would compile to the same name: \(names)") }
    if plan {
        var copies = [PocketganBundle.manifestName]
        for concept in m.concepts {
            if let g = concept.golden { copies += [g.input, g.output] }
        }
        var seen = Set<String>()
        for path in copies where seen.insert(path).inserted { print("copy \(path)") }
        for package in packages { print("compile \(package)") }
    }
} catch {
    fail((error as? LocalizedError)?.errorDescription ?? "\(error)")
}
