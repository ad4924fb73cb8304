package dev.pocketgan.demo

import androidx.test.ext.junit.runners.AndroidJUnit4
import androidx.test.platform.app.InstrumentationRegistry
import dev.pocketgan.demo.core.GoldenCheck
import dev.pocketgan.demo.core.UnknownConceptException
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test
import org.junit.runner.RunWith

/**
 * On a phone or an emulator (./gradlew connectedAndroidTest): the real ExecuTorch program
 * of the bundle the APK carries, every concept method against its golden vectors.
 */
@RunWith(AndroidJUnit4::class)
class EngineInstrumentedTest {
    private val context = InstrumentationRegistry.getInstrumentation().targetContext

    @Test
    fun everyConceptPassesItsGoldenVectors() {
        PocketganEngine.open(BundleInstaller.install(context)).use { engine ->
            val results = engine.checkGolden()
            assertEquals(engine.concepts, results.map { it.concept })
            assertTrue(GoldenCheck.summary(results), results.all { it.passed })
        }
    }

    @Test
    fun switchingConceptsRunsAnotherMethodWithoutReloading() {
        PocketganEngine.open(BundleInstaller.install(context)).use { engine ->
            val x = FloatArray(3 * engine.imageSize * engine.imageSize) { (it % 255) / 127.5f - 1f }
            val outputs = engine.concepts.map { engine.setConcept(it); engine.runTensor(x) }
            assertFalse(outputs[0].contentEquals(outputs[1]))
            // back to the first concept: the same output as before
            engine.setConcept(engine.concepts[0])
            assertArrayEquals(outputs[0], engine.runTensor(x), 1e-5f)
            assertThrows(UnknownConceptException::class.java) { engine.setConcept("not-a-concept") }
        }
    }
}
