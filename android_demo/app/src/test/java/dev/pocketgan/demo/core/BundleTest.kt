package dev.pocketgan.demo.core

import java.io.ByteArrayOutputStream
import java.io.File
import java.nio.file.Files
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test

class BundleTest {
    private fun tinyBundle(): File {
        val dir = Files.createTempDirectory("pocketgan-bundle").toFile()
        val manifest = Json.parse(Fixtures.text("app_manifests/android.json")) as MutableMap<String, Any?>
        val payload = "not really a program".toByteArray()
        File(dir, "executorch").mkdirs()
        File(dir, "executorch/generator.pte").writeBytes(payload)
        File(dir, "stray.bin").writeBytes(payload)
        manifest["artifacts"] = mapOf("executorch/generator.pte" to mapOf("sha256" to Sha256.hex(payload), "bytes" to payload.size.toLong()))
        File(dir, "manifest.json").writeText(Json.write(manifest, indent = 1))
        return dir
    }

    @Test
    fun readsVerifiedFiles() {
        val dir = tinyBundle()
        val bundle = VerifiedBundle.open(DirectorySource(dir))
        assertArrayEquals("not really a program".toByteArray(), bundle.read("executorch/generator.pte"))
        val copy = ByteArrayOutputStream()
        bundle.copyVerified("executorch/generator.pte", copy)
        assertArrayEquals("not really a program".toByteArray(), copy.toByteArray())
        bundle.verify("executorch/generator.pte")
    }

    @Test
    fun aChangedFileIsAChecksumError() {
        val dir = tinyBundle()
        File(dir, "executorch/generator.pte").writeBytes("not really a progrAm".toByteArray())
        val bundle = VerifiedBundle.open(DirectorySource(dir))
        val e = assertThrows(ChecksumException::class.java) { bundle.read("executorch/generator.pte") }
        assertTrue(e.message!!.contains("sha256"))
        File(dir, "executorch/generator.pte").writeBytes("short".toByteArray())
        assertThrows(ChecksumException::class.java) { bundle.verify("executorch/generator.pte") }
    }

    @Test
    fun anUnlistedFileIsNeverRead() {
        val bundle = VerifiedBundle.open(DirectorySource(tinyBundle()))
        assertThrows(ChecksumException::class.java) { bundle.read("stray.bin") }
        assertThrows(BundleException::class.java) { bundle.read("../stray.bin") }
    }

    @Test
    fun sha256OfKnownVectors() {
        assertEquals("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", Sha256.hex(ByteArray(0)))
        assertEquals("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", Sha256.hex("abc".toByteArray()))
    }

    @Test
    fun everyArtifactOfAnExportedBundleVerifies() {
        val dir = Fixtures.optionalDir("pocketgan.goldenBundle")
        val bundle = VerifiedBundle.open(DirectorySource(dir))
        assertTrue(bundle.manifest.artifacts.size > 3)
        for (path in bundle.manifest.artifacts.keys) bundle.verify(path)
    }
}
