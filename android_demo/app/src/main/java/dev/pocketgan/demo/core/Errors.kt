package dev.pocketgan.demo.core

/** Every error of the pocketgan core: the same kinds as the Python and web runtimes. */
open class PocketganException(message: String, cause: Throwable? = null) : Exception(message, cause)

/** The manifest is malformed, or the bundle lacks what this app needs. */
class BundleException(message: String, cause: Throwable? = null) : PocketganException(message, cause)

/** The bundle was written by a newer pocketgan (`format_version` above what this app reads). */
class UnsupportedFormatException(message: String) : PocketganException(message)

/** A file's size or sha256 differs from the manifest's `artifacts` entry, or it is not listed. */
class ChecksumException(message: String) : PocketganException(message)

/** A concept name that is not in the manifest. */
class UnknownConceptException(concept: String, known: List<String>) :
    PocketganException("unknown concept '$concept'; the bundle has ${known.joinToString(", ")}")

/** An image the pre-processing cannot take (empty, wrong byte count) or a PNG it cannot decode. */
class InvalidImageException(message: String) : PocketganException(message)
