package dev.pocketgan.demo.core

/**
 * A small, strict JSON reader and writer in plain Kotlin, so the core reads manifests the same
 * way on a phone and in JVM unit tests. Not Android's org.json: it is a stub in JVM unit tests,
 * lenient (comments, single quotes, unquoted strings), coerces 2.5 to the integer 2, and
 * recurses without a depth limit (android_demo/README.md, "JSON").
 *
 * Values: `Map<String, Any?>` (insertion order kept), `List<Any?>`, `String`, `Long`
 * (integers without fraction or exponent), `Double`, `Boolean` and `null`. Nesting deeper
 * than [MAX_DEPTH] arrays and objects is a [ParseException], not a StackOverflowError.
 */
object Json {

    /** The deepest nesting of arrays and objects [parse] accepts (a manifest nests about 5). */
    const val MAX_DEPTH = 64

    class ParseException(message: String) : PocketganException(message)

    fun parse(text: String): Any? {
        val reader = Reader(text)
        reader.skipSpace()
        val value = reader.value()
        reader.skipSpace()
        if (reader.pos != text.length) throw reader.error("trailing characters")
        return value
    }

    /** [value] as JSON text; [indent] > 0 pretty-prints with that many spaces per level. */
    fun write(value: Any?, indent: Int = 0): String {
        val out = StringBuilder()
        writeValue(out, value, indent, 0)
        return out.toString()
    }

    private class Reader(val text: String) {
        var pos = 0
        var depth = 0

        fun error(what: String) = ParseException("invalid JSON at character $pos: $what")

        fun skipSpace() {
            while (pos < text.length && text[pos].let { it == ' ' || it == '\n' || it == '\r' || it == '\t' }) pos++
        }

        fun expect(c: Char) {
            if (pos >= text.length || text[pos] != c) throw error("expected '$c'")
            pos++
        }

        fun value(): Any? {
            if (pos >= text.length) throw error("unexpected end")
            return when (val c = text[pos]) {
                '{' -> nested { obj() }
                '[' -> nested { array() }
                '"' -> string()
                't' -> literal("true", true)
                'f' -> literal("false", false)
                'n' -> literal("null", null)
                else -> if (c == '-' || c in '0'..'9') number() else throw error("unexpected '$c'")
            }
        }

        inline fun <T> nested(read: () -> T): T {
            if (++depth > MAX_DEPTH) throw error("nested deeper than $MAX_DEPTH arrays and objects")
            val value = read()
            depth--
            return value
        }

        fun literal(word: String, result: Any?): Any? {
            if (!text.startsWith(word, pos)) throw error("expected $word")
            pos += word.length
            return result
        }

        fun obj(): Map<String, Any?> {
            expect('{')
            val map = LinkedHashMap<String, Any?>()
            skipSpace()
            if (pos < text.length && text[pos] == '}') {
                pos++
                return map
            }
            while (true) {
                skipSpace()
                val key = string()
                skipSpace()
                expect(':')
                skipSpace()
                map[key] = value()
                skipSpace()
                if (pos < text.length && text[pos] == ',') {
                    pos++
                    continue
                }
                expect('}')
                return map
            }
        }

        fun array(): List<Any?> {
            expect('[')
            val list = ArrayList<Any?>()
            skipSpace()
            if (pos < text.length && text[pos] == ']') {
                pos++
                return list
            }
            while (true) {
                skipSpace()
                list.add(value())
                skipSpace()
                if (pos < text.length && text[pos] == ',') {
                    pos++
                    continue
                }
                expect(']')
                return list
            }
        }

        fun string(): String {
            expect('"')
            val sb = StringBuilder()
            while (true) {
                if (pos >= text.length) throw error("unterminated string")
                val c = text[pos++]
                when {
                    c == '"' -> return sb.toString()
                    c == '\\' -> {
                        if (pos >= text.length) throw error("unterminated escape")
                        when (val e = text[pos++]) {
                            '"' -> sb.append('"')
                            '\\' -> sb.append('\\')
                            '/' -> sb.append('/')
                            'b' -> sb.append('\b')
                            'f' -> sb.append('\u000C')
                            'n' -> sb.append('\n')
                            'r' -> sb.append('\r')
                            't' -> sb.append('\t')
                            'u' -> {
                                if (pos + 4 > text.length) throw error("short \\u escape")
                                val code = text.substring(pos, pos + 4).toIntOrNull(16) ?: throw error("bad \\u escape")
                                sb.append(code.toChar())
                                pos += 4
                            }
                            else -> throw error("bad escape '\\$e'")
                        }
                    }
                    c < ' ' -> throw error("control character in string")
                    else -> sb.append(c)
                }
            }
        }

        fun number(): Any {
            val start = pos
            if (text[pos] == '-') pos++
            var integral = true
            while (pos < text.length) {
                val c = text[pos]
                if (c in '0'..'9') {
                    pos++
                } else if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
                    integral = false
                    pos++
                } else {
                    break
                }
            }
            val token = text.substring(start, pos)
            if (integral) token.toLongOrNull()?.let { return it }
            return token.toDoubleOrNull() ?: throw error("bad number '$token'")
        }
    }

    private fun writeValue(out: StringBuilder, value: Any?, indent: Int, depth: Int) {
        when (value) {
            null -> out.append("null")
            is String -> writeString(out, value)
            is Boolean -> out.append(value.toString())
            is Double -> out.append(if (value.isNaN() || value.isInfinite()) "null" else value.toString())
            is Float -> writeValue(out, value.toDouble(), indent, depth)
            is Number -> out.append(value.toLong().toString())
            is Map<*, *> -> {
                if (value.isEmpty()) {
                    out.append("{}")
                    return
                }
                out.append('{')
                var first = true
                for ((k, v) in value) {
                    if (!first) out.append(',')
                    first = false
                    newline(out, indent, depth + 1)
                    writeString(out, k.toString())
                    out.append(if (indent > 0) ": " else ":")
                    writeValue(out, v, indent, depth + 1)
                }
                newline(out, indent, depth)
                out.append('}')
            }
            is Iterable<*> -> {
                val items = value.toList()
                if (items.isEmpty()) {
                    out.append("[]")
                    return
                }
                out.append('[')
                items.forEachIndexed { i, v ->
                    if (i > 0) out.append(',')
                    newline(out, indent, depth + 1)
                    writeValue(out, v, indent, depth + 1)
                }
                newline(out, indent, depth)
                out.append(']')
            }
            is DoubleArray -> writeValue(out, value.toList(), indent, depth)
            is IntArray -> writeValue(out, value.toList(), indent, depth)
            is LongArray -> writeValue(out, value.toList(), indent, depth)
            else -> writeString(out, value.toString())
        }
    }

    private fun newline(out: StringBuilder, indent: Int, depth: Int) {
        if (indent <= 0) return
        out.append('\n')
        repeat(indent * depth) { out.append(' ') }
    }

    private fun writeString(out: StringBuilder, s: String) {
        out.append('"')
        for (c in s) {
            when (c) {
                '"' -> out.append("\\\"")
                '\\' -> out.append("\\\\")
                '\n' -> out.append("\\n")
                '\r' -> out.append("\\r")
                '\t' -> out.append("\\t")
                else -> if (c < ' ') out.append(String.format("\\u%04x", c.code)) else out.append(c)
            }
        }
        out.append('"')
    }
}

// --- typed access to parsed JSON, with errors that name the key ---------------------------

internal fun Map<String, Any?>.obj(key: String, where: String): Map<String, Any?> {
    @Suppress("UNCHECKED_CAST")
    return this[key] as? Map<String, Any?> ?: throw BundleException("$where.$key must be an object")
}

internal fun Map<String, Any?>.objOrNull(key: String, where: String): Map<String, Any?>? {
    if (this[key] == null) return null
    return obj(key, where)
}

internal fun Map<String, Any?>.str(key: String, where: String): String =
    this[key] as? String ?: throw BundleException("$where.$key must be a string")

internal fun Map<String, Any?>.strOrNull(key: String): String? = this[key] as? String

internal fun Map<String, Any?>.long(key: String, where: String): Long =
    (this[key] as? Long) ?: throw BundleException("$where.$key must be an integer")

internal fun Map<String, Any?>.list(key: String, where: String): List<Any?> =
    this[key] as? List<Any?> ?: throw BundleException("$where.$key must be an array")

internal fun Map<String, Any?>.stringMap(key: String, where: String): Map<String, String> {
    val m = objOrNull(key, where) ?: return emptyMap()
    return m.mapValues { (k, v) -> v as? String ?: throw BundleException("$where.$key.$k must be a string") }
}

internal fun Any?.asNumber(where: String): Double = when (this) {
    is Long -> toDouble()
    is Double -> this
    else -> throw BundleException("$where must be a number")
}
