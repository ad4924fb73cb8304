package dev.pocketgan.demo.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test

/** The manifest of a real `pocketgan export --for android` app bundle (tests/fixtures/app_manifests/android.json). */
class ManifestTest {
    private val text = Fixtures.text("app_manifests/android.json")
    private val manifest = BundleManifest.parse(text)

    @Suppress("UNCHECKED_CAST")
    private fun raw(): MutableMap<String, Any?> = Json.parse(text) as MutableMap<String, Any?>

    @Test
    fun readsTheExportedAndroidBundle() {
        val raw = raw()
        assertEquals(1, manifest.formatVersion)
        val io = raw["io"] as Map<*, *>
        assertEquals((io["input"] as Map<*, *>)["name"], manifest.input.name)
        assertEquals((io["output"] as Map<*, *>)["name"], manifest.output.name)
        assertEquals(listOf(1, 3, manifest.imageSize, manifest.imageSize), manifest.input.shape)
        assertEquals((raw["concepts"] as List<*>).map { (it as Map<*, *>)["name"] }, manifest.conceptNames)
        val et = (raw["targets"] as Map<*, *>)["executorch"] as Map<*, *>
        val t = manifest.requireExecuTorch()
        assertEquals(et["program"], t.program)
        assertEquals(et["methods"], t.methods)
        assertEquals(35.0, t.thresholdDb, 0.0)
        assertEquals(ConceptMode.SEPARATE to et["program"], manifest.programPath(ConceptMode.AUTO))
        for (c in manifest.conceptNames) assertEquals((et["methods"] as Map<*, *>)[c], manifest.methodName(c))
        assertEquals(listOf(ConceptMode.SEPARATE), manifest.execuTorchModes())
        // the app needs the program and the golden vectors, all listed in artifacts
        val files = manifest.execuTorchFiles(ConceptMode.AUTO)
        assertEquals(et["program"], files[0])
        assertTrue(files.all { it in manifest.artifacts })
        assertTrue(manifest.concepts.all { it.golden != null })
    }

    @Test
    fun unknownConceptsAreTypedErrors() {
        assertThrows(UnknownConceptException::class.java) { manifest.methodName("no-such-concept") }
        assertThrows(BundleException::class.java) { manifest.programPath(ConceptMode.MERGED) }
    }

    @Test
    fun refusesANewerFormatWithAnUpgradeMessage() {
        val m = raw()
        m["format_version"] = 3L
        val e = assertThrows(UnsupportedFormatException::class.java) { BundleManifest.parse(Json.write(m)) }
        assertTrue(e.message!!.contains("upgrade"))
    }

    @Test
    fun refusesWhatIsNotABundle() {
        val m = raw()
        m["format"] = "something-else"
        assertThrows(BundleException::class.java) { BundleManifest.parse(Json.write(m)) }
        assertThrows(BundleException::class.java) { BundleManifest.parse("[]") }
    }

    @Test
    fun refusesPathsOutsideTheBundle() {
        for (bad in listOf("../x.pte", "/abs/x.pte", "a//b", "a\\b", "./a", "")) {
            assertThrows(bad, BundleException::class.java) { BundleManifest.checkPath(bad) }
        }
        assertEquals("executorch/generator.pte", BundleManifest.checkPath("executorch/generator.pte"))
    }

    @Test
    fun aBundleWithoutExecuTorchSaysHowToExportOne() {
        val m = raw()
        m["targets"] = mapOf<String, Any?>()
        val parsed = BundleManifest.parse(Json.write(m))
        assertNull(parsed.executorch)
        val e = assertThrows(BundleException::class.java) { parsed.requireExecuTorch() }
        assertTrue(e.message!!.contains("--for android"))
    }

    @Test
    fun theIosBundleParsesToo() {
        // the iOS export carries an ExecuTorch target as well (ExecuTorch on iOS)
        val ios = BundleManifest.parse(Fixtures.text("app_manifests/ios.json"))
        assertEquals(manifest.conceptNames, ios.conceptNames)
    }
}
