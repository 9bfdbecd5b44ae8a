#!/usr/bin/env bash
# Builds TidewireFFI.xcframework (iOS device arm64, iOS simulator arm64 +
# x86_64, macOS arm64 + x86_64) from the Rust library, next to Package.swift.
# Needs macOS with Xcode and rustup. Usage: scripts/build-xcframework.sh [--check]
#   --check  only checks that the tools are there (runs anywhere).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="$(cd "$here/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin x86_64-apple-darwin)

missing=()
for tool in cargo rustup xcodebuild lipo; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ "${1:-}" = "--check" ]; then
  if [ ${#missing[@]} -gt 0 ]; then
    echo "build-xcframework: cannot run here (missing: ${missing[*]}); needs macOS with Xcode" >&2
  else
    echo "build-xcframework: tools present"
  fi
  exit 0
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "build-xcframework: missing ${missing[*]} (needs macOS with Xcode and rustup)" >&2
  exit 1
fi

rustup target add "${targets[@]}"
for t in "${targets[@]}"; do
  cargo build --release -p tidewire-swift --lib --target "$t" --manifest-path "$root/Cargo.toml"
done
lib=libtidewire_swift.a
out="$target_dir/xcframework"
rm -rf "$out" "$here/TidewireFFI.xcframework"
mkdir -p "$out/ios-sim" "$out/macos"
lipo -create "$target_dir/aarch64-apple-ios-sim/release/$lib" "$target_dir/x86_64-apple-ios/release/$lib" \
  -output "$out/ios-sim/$lib"
lipo -create "$target_dir/aarch64-apple-darwin/release/$lib" "$target_dir/x86_64-apple-darwin/release/$lib" \
  -output "$out/macos/$lib"
headers="$here/Sources/TidewireFFI/include"
xcodebuild -create-xcframework \
  -library "$target_dir/aarch64-apple-ios/release/$lib" -headers "$headers" \
  -library "$out/ios-sim/$lib" -headers "$headers" \
  -library "$out/macos/$lib" -headers "$headers" \
  -output "$here/TidewireFFI.xcframework"
echo "built $here/TidewireFFI.xcframework; now: cd bindings-swift && swift build"
