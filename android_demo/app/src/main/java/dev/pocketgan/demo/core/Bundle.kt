package dev.pocketgan.demo.core

import java.io.File
import java.io.InputStream
import java.io.OutputStream
import java.security.MessageDigest

/** Where a bundle's files are read from: a folder, an APK's assets, a test fixture. */
fun interface BundleSource {
    /** Opens the file at [path] (a manifest path, '/'-separated, relative to the bundle root). */
    fun open(path: String): InputStream
}

/** A bundle folder on disk. */
class DirectorySource(val root: File) : BundleSource {
    override fun open(path: String): InputStream = File(root, path).inputStream()
}

object Sha256 {
    fun hex(bytes: ByteArray): String = MessageDigest.getInstance("SHA-256").digest(bytes).toHex()

    /** sha256 and byte count of a stream, copied to [copyTo] on the way when given. */
    fun stream(input: InputStream, copyTo: OutputStream? = null): Pair<String, Long> {
        val digest = MessageDigest.getInstance("SHA-256")
        val buffer = ByteArray(1 shl 16)
        var total = 0L
        while (true) {
            val n = input.read(buffer)
            if (n < 0) break
            digest.update(buffer, 0, n)
            copyTo?.write(buffer, 0, n)
            total += n
        }
        return digest.digest().toHex() to total
    }

    private fun ByteArray.toHex(): String {
        val sb = StringBuilder(size * 2)
        for (b in this) {
            val v = b.toInt() and 0xFF
            sb.append("0123456789abcdef"[v ushr 4]).append("0123456789abcdef"[v and 0xF])
        }
        return sb.toString()
    }
}

/**
 * A manifest and the source of its files: every read is checked against the manifest's
 * `artifacts` (size and sha256), a mismatch or an unlisted path is a [ChecksumException].
 */
class VerifiedBundle(val manifest: BundleManifest, val source: BundleSource) {

    /** The file at [path], verified. */
    fun read(path: String): ByteArray {
        val artifact = artifact(path)
        val bytes = source.open(path).use { it.readBytes() }
        check(path, artifact, Sha256.hex(bytes), bytes.size.toLong())
        return bytes
    }

    /** Verifies the file at [path] while copying it to [out] (e.g. out of the APK into app storage). */
    fun copyVerified(path: String, out: OutputStream) {
        val artifact = artifact(path)
        val (sha, size) = source.open(path).use { Sha256.stream(it, out) }
        check(path, artifact, sha, size)
    }

    /** Verifies the file at [path] without keeping it. */
    fun verify(path: String) {
        val artifact = artifact(path)
        val (sha, size) = source.open(path).use { Sha256.stream(it) }
        check(path, artifact, sha, size)
    }

    private fun artifact(path: String): BundleManifest.Artifact {
        BundleManifest.checkPath(path)
        return manifest.artifacts[path] ?: throw ChecksumException("$path is not listed in the manifest's artifacts")
    }

    private fun check(path: String, artifact: BundleManifest.Artifact, sha: String, size: Long) {
        if (size != artifact.bytes) throw ChecksumException("$path has $size bytes, the manifest says ${artifact.bytes}")
        if (sha != artifact.sha256) throw ChecksumException("$path has sha256 $sha, the manifest says ${artifact.sha256}")
    }

    companion object {
        const val MANIFEST = "manifest.json"

        /** Reads and parses `manifest.json` from [source]. */
        fun open(source: BundleSource): VerifiedBundle {
            val text = source.open(MANIFEST).use { String(it.readBytes(), Charsets.UTF_8) }
            return VerifiedBundle(BundleManifest.parse(text), source)
        }
    }
}
