import AVFoundation
import CoreGraphics
import Foundation
import PocketganCore

/// AVFoundation camera -> letterbox -> the active concept's Core ML function -> cropped back
/// -> published for SwiftUI, with the frame rate and the model time for the overlay.
final class CameraModel: NSObject, ObservableObject, AVCaptureVideoDataOutputSampleBufferDelegate {
    @Published var frame: CGImage?
    @Published var overlay = ""
    @Published var status = "Opening the bundle…"
    @Published var concepts: [BundleManifest.Concept] = []
    @Published var selected = ""
    /// while true the camera frame is shown unedited ("hold for original")
    @Published var showOriginal = false
    /// the bundle has strength and blending (the sliders are shown)
    @Published var canMix = false
    /// strength of the selected concept, 0...1.5
    @Published var strength = 1.0 { didSet { applyMix() } }
    /// cross-fade from the selected concept to the next one, 0...1
    @Published var crossFade = 0.0 { didSet { applyMix() } }

    private let session = AVCaptureSession()
    private let frames = DispatchQueue(label: "pocketgan.camera")
    private var engine: CoreMLEngine?
    private let fps = FpsMeter()

    /// Opens the bundle the app carries (its manifest and golden vectors are resources, the
    /// models compiled by Xcode), then starts the camera.
    func start() {
        frames.async {
            do {
                guard let root = Bundle.main.resourceURL else { throw PocketganError.bundle("no app resources") }
                let engine = try CoreMLEngine.open(try PocketganBundle.open(root))
                self.engine = engine
                let concepts = engine.manifest.concepts
                DispatchQueue.main.async {
                    self.concepts = concepts
                    self.canMix = engine.canMix
                    self.selected = engine.concept
                    self.status = "\(concepts.count) concepts, \(engine.variant.rawValue) (\(engine.packagePaths.count == 1 ? engine.packagePaths[0] : "\(engine.packagePaths.count) packages"))"
                }
                self.configureCamera()
            } catch {
                DispatchQueue.main.async { self.status = "Could not open the bundle: \(error.localizedDescription)" }
            }
        }
    }

    /// A concept switch: the next frame runs another loaded function.
    func select(_ concept: String) {
        selected = concept
        crossFade = 0
        applyMix()
    }

    /// The selected concept at the slider's strength, or the cross-fade to the next concept:
    /// the next frame runs the mix function with new weights (nothing is reloaded).
    private func applyMix() {
        let concept = selected, strength = strength, fade = crossFade
        let names = concepts.map(\.name)
        frames.async {
            guard let engine = self.engine, let i = names.firstIndex(of: concept) else { return }
            do {
                if fade > 0, engine.canMix {
                    try engine.setCrossFade(from: concept, to: names[(i + 1) % names.count], t: fade)
                } else {
                    try engine.setConcept(concept, strength: engine.canMix ? strength : 1.0)
                }
            } catch {
                DispatchQueue.main.async { self.status = error.localizedDescription }
            }
        }
    }

    func checkGolden() {
        status = "Checking golden vectors…"
        frames.async {
            let text: String
            do {
                text = GoldenCheck.summary(try self.engine?.checkGolden() ?? [])
            } catch {
                text = "golden check failed: \(error.localizedDescription)"
            }
            DispatchQueue.main.async { self.status = text }
        }
    }

    private func configureCamera() {
        AVCaptureDevice.requestAccess(for: .video) { granted in
            guard granted else {
                DispatchQueue.main.async { self.status = "The camera permission was denied: the demo needs the camera." }
                return
            }
            self.frames.async { self.startSession() }
        }
    }

    private func startSession() {
        session.beginConfiguration()
        session.sessionPreset = .vga640x480
        guard let device = AVCaptureDevice.default(.builtInWideAngleCamera, for: .video, position: .back),
              let input = try? AVCaptureDeviceInput(device: device), session.canAddInput(input) else {
            session.commitConfiguration()
            DispatchQueue.main.async { self.status = "No camera available" }
            return
        }
        session.addInput(input)
        let output = AVCaptureVideoDataOutput()
        output.videoSettings = [kCVPixelBufferPixelFormatTypeKey as String: kCVPixelFormatType_32BGRA]
        output.alwaysDiscardsLateVideoFrames = true  // drop frames while the model is busy
        output.setSampleBufferDelegate(self, queue: frames)
        guard session.canAddOutput(output) else {
            session.commitConfiguration()
            return
        }
        session.addOutput(output)
        if let connection = output.connection(with: .video), connection.isVideoRotationAngleSupported(90) {
            connection.videoRotationAngle = 90  // portrait: upright frames
        }
        session.commitConfiguration()
        session.startRunning()
    }

    func captureOutput(_ output: AVCaptureOutput, didOutput sampleBuffer: CMSampleBuffer, from connection: AVCaptureConnection) {
        guard let engine, let pixels = CMSampleBufferGetImageBuffer(sampleBuffer) else { return }
        CVPixelBufferLockBaseAddress(pixels, .readOnly)
        defer { CVPixelBufferUnlockBaseAddress(pixels, .readOnly) }
        guard let base = CVPixelBufferGetBaseAddress(pixels) else { return }
        do {
            let photo = try RGBImage.fromPixels32(base, width: CVPixelBufferGetWidth(pixels), height: CVPixelBufferGetHeight(pixels),
                                                  bytesPerRow: CVPixelBufferGetBytesPerRow(pixels), bgra: true)
            let edit = try engine.edit(photo)
            let shown = (showOriginal ? photo : edit.image).makeCGImage()
            let rate = fps.tick()
            let text = String(format: "%.1f fps  model %.1f ms  frame %.1f ms\n%@  %ldx%ld -> %ld²", rate, edit.modelMs, edit.totalMs,
                              engine.concept, photo.width, photo.height, engine.imageSize)
            DispatchQueue.main.async {
                self.frame = shown
                self.overlay = text
            }
        } catch {
            DispatchQueue.main.async { self.status = "\(error.localizedDescription)" }
        }
    }
}
