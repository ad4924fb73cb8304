import SwiftUI

@main
struct PocketganDemoApp: App {
    var body: some Scene {
        WindowGroup {
            ContentView()
        }
    }
}
