import groovy.json.JsonSlurper
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

// The ExecuTorch Android library must be the release that exported the bundle's .pte:
// pocketgan pins executorch==1.5.1 (docs/executorch.md), so org.pytorch:executorch-android:1.5.1.
val executorchVersion: String = providers.gradleProperty("executorchVersion").getOrElse("1.5.1")

// The exported app bundle (`pocketgan export --for android --out android_bundle`), relative to android_demo/.
val pocketganBundle: File = rootProject.file(providers.gradleProperty("pocketganBundle").getOrElse("android_bundle"))
val stagedAssets = layout.buildDirectory.dir("generated/pocketgan/assets")

/**
 * The files of the bundle the app reads, every path taken from its manifest.json
 * (docs/bundle-format.md): the manifest, the ExecuTorch program(s) and the golden vectors.
 * The ONNX files an Android export also carries stay out of the APK.
 */
fun pocketganAppFiles(manifestFile: File): Set<String> {
    if (!manifestFile.isFile) {
        throw GradleException(
            "no bundle at ${manifestFile.parentFile}: export one first, from android_demo/:\n" +
                "    pocketgan export --for android --out android_bundle\n" +
                "(or point -PpocketganBundle=DIR at another export)")
    }
    @Suppress("UNCHECKED_CAST")
    val manifest = JsonSlurper().parse(manifestFile) as Map<String, Any?>
    val targets = manifest["targets"] as Map<String, Any?>
    @Suppress("UNCHECKED_CAST")
    val executorch = targets["executorch"] as Map<String, Any?>?
        ?: throw GradleException("${manifestFile.parentFile} has no ExecuTorch target: pocketgan export --for android")
    val files = linkedSetOf("manifest.json")
    listOf("program", "merged_program").mapNotNullTo(files) { executorch[it] as String? }
    @Suppress("UNCHECKED_CAST")
    for (concept in manifest["concepts"] as List<Map<String, Any?>>) {
        (concept["golden"] as Map<String, String>?)?.let { files.addAll(it.values) }
    }
    return files
}

val stagePocketganBundle by tasks.registering(Sync::class) {
    description = "Copies the exported bundle's manifest, ExecuTorch program(s) and golden vectors into the APK's assets."
    val manifestFile = File(pocketganBundle, "manifest.json")
    val wanted by lazy { pocketganAppFiles(manifestFile) }
    inputs.dir(pocketganBundle).optional()
    from(pocketganBundle) {
        include { it.isDirectory || it.relativePath.pathString in wanted }
    }
    into(stagedAssets.map { it.dir("pocketgan_bundle") })
    includeEmptyDirs = false
    doFirst { pocketganAppFiles(manifestFile) }
}

android {
    namespace = "dev.pocketgan.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "dev.pocketgan.demo"
        minSdk = 26
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
        testInstrumentationRunner = "androidx.test.runner.AndroidJUnitRunner"
        buildConfigField("String", "EXECUTORCH_VERSION", "\"$executorchVersion\"")
        // the ABIs executorch-android ships native libraries for
        ndk { abiFilters += listOf("arm64-v8a", "x86_64") }
    }

    buildFeatures { buildConfig = true }

    buildTypes {
        release {
            isMinifyEnabled = true
            proguardFiles(getDefaultProguardFile("proguard-android-optimize.txt"), "proguard-rules.pro")
            signingConfig = signingConfigs.getByName("debug")
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    sourceSets["main"].assets.srcDir(stagedAssets.get().asFile)

    // the .pte is copied out of the APK once (Module.load takes a file path): keep it uncompressed
    androidResources { noCompress += listOf("pte") }

    testOptions {
        unitTests.all {
            // the repository's shared fixtures: letterbox table, exported manifests
            it.systemProperty("pocketgan.fixtures", rootProject.file("../tests/fixtures").absolutePath)
        }
    }
}

kotlin {
    compilerOptions { jvmTarget.set(JvmTarget.JVM_17) }
}

tasks.named("preBuild") { dependsOn(stagePocketganBundle) }

dependencies {
    // ExecuTorch: org.pytorch.executorch.Module (XNNPACK included), and the JNI glue it loads through
    implementation("org.pytorch:executorch-android:$executorchVersion")
    implementation("com.facebook.fbjni:fbjni:0.7.0")
    implementation("com.facebook.soloader:nativeloader:0.10.5")

    val camerax = "1.4.1"
    implementation("androidx.camera:camera-core:$camerax")
    implementation("androidx.camera:camera-camera2:$camerax")
    implementation("androidx.camera:camera-lifecycle:$camerax")

    implementation("androidx.appcompat:appcompat:1.7.0")
    implementation("androidx.activity:activity-ktx:1.9.3")
    implementation("com.google.android.material:material:1.12.0")

    // plain JUnit 4 on the JVM for the core (app/src/test), instrumented tests on a device (app/src/androidTest)
    testImplementation("junit:junit:4.13.2")
    androidTestImplementation("androidx.test.ext:junit:1.2.1")
    androidTestImplementation("androidx.test:runner:1.6.2")
}
