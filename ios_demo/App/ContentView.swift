import PocketganCore
import SwiftUI

/// The edited camera feed, the FPS overlay, one chip per concept of the manifest, the strength
/// and cross-fade sliders (bundles with a neutral concept), and the golden-vector check.
struct ContentView: View {
    @StateObject private var camera = CameraModel()

    var body: some View {
        ZStack(alignment: .topLeading) {
            Color.black.ignoresSafeArea()
            if let frame = camera.frame {
                Image(decorative: frame, scale: 1)
                    .resizable()
                    .scaledToFit()
                    .frame(maxWidth: .infinity, maxHeight: .infinity)
            }
            Text(camera.overlay)
                .font(.system(size: 13, design: .monospaced))
                .foregroundStyle(.white)
                .padding(6)
                .background(.black.opacity(0.6))
                .padding(12)
            VStack(alignment: .leading, spacing: 8) {
                Spacer()
                Text(camera.status)
                    .font(.system(size: 12, design: .monospaced))
                    .foregroundStyle(.white)
                ScrollView(.horizontal, showsIndicators: false) {
                    HStack {
                        ForEach(camera.concepts) { concept in
                            ConceptChip(concept: concept, selected: concept.name == camera.selected) {
                                camera.select(concept.name)
                            }
                        }
                    }
                }
                if camera.canMix {
                    HStack {
                        Text(String(format: "strength %.2f", camera.strength))
                            .font(.system(size: 12, design: .monospaced))
                            .foregroundStyle(.white)
                        Slider(value: $camera.strength, in: 0...1.5)
                    }
                    HStack {
                        Text("cross-fade to next")
                            .font(.system(size: 12, design: .monospaced))
                            .foregroundStyle(.white)
                        Slider(value: $camera.crossFade, in: 0...1)
                    }
                }
                HStack {
                    Text("Hold for original")
                        .padding(.vertical, 8)
                        .frame(maxWidth: .infinity)
                        .overlay(RoundedRectangle(cornerRadius: 16).stroke(.white.opacity(0.6)))
                        .foregroundStyle(.white)
                        .onLongPressGesture(minimumDuration: 0, maximumDistance: 50, perform: {}, onPressingChanged: { pressing in
                            camera.showOriginal = pressing
                        })
                    Button("Check golden vectors") { camera.checkGolden() }
                        .buttonStyle(.bordered)
                        .frame(maxWidth: .infinity)
                }
            }
            .padding(8)
            .background(alignment: .bottom) { Color.black.opacity(0.5).frame(height: camera.canMix ? 230 : 150).ignoresSafeArea() }
        }
        .onAppear { camera.start() }
    }
}

/// A concept from the manifest: its name as the label, its description for VoiceOver.
struct ConceptChip: View {
    let concept: BundleManifest.Concept
    let selected: Bool
    let action: () -> Void

    var body: some View {
        Button(action: action) {
            Text(concept.name.replacingOccurrences(of: "_", with: " "))
                .font(.callout)
                .padding(.horizontal, 12)
                .padding(.vertical, 6)
                .background(selected ? Color.white : Color.white.opacity(0.15), in: Capsule())
                .foregroundStyle(selected ? Color.black : Color.white)
        }
        .accessibilityLabel(concept.description ?? concept.name)
        .accessibilityAddTraits(selected ? .isSelected : [])
    }
}
