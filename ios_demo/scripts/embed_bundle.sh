#!/bin/sh
# Xcode build phase of the app target (project.yml): puts the exported bundle into the app.
#   1. pocketgan-verify (this Swift package, run as a macOS tool) checks every file of the
#      bundle against its manifest (size, sha256, format_version), the .mlpackage files
#      included: once compiled, the app can no longer check them;
#   2. copies manifest.json and the golden vectors into the app's resources;
#   3. compiles each Core ML package the manifest names (targets.coreml.package, and the
#      iOS 17 packages of targets.coreml.ios17.packages) into <name>.mlmodelc with
#      `xcrun coremlcompiler`, next to them.
# The bundle: ios_demo/ios_bundle (`pocketgan export --for ios --out ios_bundle`), or $POCKETGAN_BUNDLE.
set -eu
HERE="$(cd "$(dirname "$0")/.." && pwd)"
BUNDLE="${POCKETGAN_BUNDLE:-$HERE/ios_bundle}"
DEST="${TARGET_BUILD_DIR:?run from Xcode}/${UNLOCALIZED_RESOURCES_FOLDER_PATH:?run from Xcode}"
if [ ! -f "$BUNDLE/manifest.json" ]; then
  echo "error: no bundle at $BUNDLE: run 'pocketgan export --for ios --out ios_bundle' in ios_demo/" >&2
  exit 1
fi
PLAN="$(env -i PATH="/usr/bin:/bin:/usr/sbin:/sbin" HOME="$HOME" \
  xcrun --sdk macosx swift run --package-path "$HERE" --scratch-path "$HERE/.build/verify" -c release \
  pocketgan-verify "$BUNDLE" --plan)"
mkdir -p "$DEST"
echo "$PLAN" | while read -r action path; do
  case "$action" in
    copy)
      mkdir -p "$DEST/$(dirname "$path")"
      cp "$BUNDLE/$path" "$DEST/$path"
      ;;
    compile)
      xcrun coremlcompiler compile "$BUNDLE/$path" "$DEST" >/dev/null
      echo "compiled $path"
      ;;
  esac
done
