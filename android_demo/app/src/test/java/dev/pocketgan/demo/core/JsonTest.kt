package dev.pocketgan.demo.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test

class JsonTest {
    @Test
    fun parsesEveryKindOfValue() {
        val v = Json.parse("""{"a": [1, -2.5, 3e2, true, false, null], "b": {"c": "x\"y\u00e9\n"}, "d": []}""")
        assertEquals(
            mapOf("a" to listOf(1L, -2.5, 300.0, true, false, null), "b" to mapOf("c" to "x\"yé\n"), "d" to emptyList<Any?>()),
            v,
        )
    }

    @Test
    fun keepsKeyOrder() {
        @Suppress("UNCHECKED_CAST")
        val m = Json.parse("""{"z": 1, "a": 2, "m": 3}""") as Map<String, Any?>
        assertEquals(listOf("z", "a", "m"), m.keys.toList())
    }

    @Test
    fun writesWhatItReads() {
        val value = linkedMapOf("s" to "tab\tquote\"", "n" to listOf(1L, 2.5, null), "o" to linkedMapOf("t" to true))
        assertEquals(value, Json.parse(Json.write(value)))
        assertEquals(value, Json.parse(Json.write(value, indent = 2)))
        assertEquals("""{"x":null}""", Json.write(mapOf("x" to Double.NaN)))
    }

    @Test
    fun boundsTheNesting() {
        var value = Json.parse("[".repeat(Json.MAX_DEPTH) + "]".repeat(Json.MAX_DEPTH))
        repeat(Json.MAX_DEPTH - 1) { value = (value as List<*>).single() }
        assertEquals(emptyList<Any?>(), value)
        for (tooDeep in listOf("[".repeat(Json.MAX_DEPTH + 1) + "]".repeat(Json.MAX_DEPTH + 1), "[".repeat(100_000),
                               "{\"a\":".repeat(100_000))) {
            val e = assertThrows(Json.ParseException::class.java) { Json.parse(tooDeep) }
            assertTrue(e.message, e.message!!.contains("nested deeper than ${Json.MAX_DEPTH}"))
        }
    }

    @Test
    fun refusesBrokenJson() {
        for (bad in listOf("{", "[1,]", "{\"a\" 1}", "tru", "\"open", "1 2", "{\"a\":1}}")) {
            assertThrows(bad, Json.ParseException::class.java) { Json.parse(bad) }
        }
    }
}
