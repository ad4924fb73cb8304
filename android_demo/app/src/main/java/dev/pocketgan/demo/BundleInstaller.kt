package dev.pocketgan.demo

import android.content.Context
import dev.pocketgan.demo.core.BundleManifest
import dev.pocketgan.demo.core.BundleSource
import dev.pocketgan.demo.core.Sha256
import dev.pocketgan.demo.core.VerifiedBundle
import java.io.File

/**
 * Puts the bundle the APK carries (`assets/pocketgan_bundle/`, staged from the export by
 * app/build.gradle.kts) into app storage: ExecuTorch's `Module.load` takes a file path.
 * Every file is verified against the manifest (size + sha256) while it is copied; the copy
 * is keyed by the manifest's hash, so a new bundle in an app update is installed once.
 */
object BundleInstaller {
    const val ASSET_DIR = "pocketgan_bundle"

    fun install(context: Context): File {
        val assets = context.assets
        val source = BundleSource { path -> assets.open("$ASSET_DIR/$path") }
        val manifestBytes = source.open(VerifiedBundle.MANIFEST).use { it.readBytes() }
        val key = Sha256.hex(manifestBytes).take(16)
        val root = File(context.filesDir, ASSET_DIR)
        val dir = File(root, key)
        if (File(dir, ".installed").isFile) return dir

        val manifest = BundleManifest.parse(String(manifestBytes, Charsets.UTF_8))
        val bundle = VerifiedBundle(manifest, source)
        val staging = File(root, ".staging-$key")
        staging.deleteRecursively()
        staging.mkdirs()
        File(staging, VerifiedBundle.MANIFEST).writeBytes(manifestBytes)
        val files = manifest.execuTorchModes().flatMap { manifest.execuTorchFiles(it) }.distinct()
        for (path in files) {
            val target = File(staging, path)
            target.parentFile?.mkdirs()
            target.outputStream().use { bundle.copyVerified(path, it) }
        }
        File(staging, ".installed").writeText(files.joinToString("\n"))
        dir.deleteRecursively()
        check(staging.renameTo(dir)) { "could not move the bundle into $dir" }
        // older installs of other bundles
        root.listFiles()?.filter { it.name != key }?.forEach { it.deleteRecursively() }
        return dir
    }
}
