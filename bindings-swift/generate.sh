#!/usr/bin/env bash
# Generates the Swift sources (committed under Sources/), the Kotlin source
# (committed under kotlin/) and UniFFI's Python bindings (for the tests)
# from the built library, with this crate's own uniffi-bindgen.
# Usage: generate.sh <libtidewire_swift.so> <python-out-dir>
set -euo pipefail
lib="$1"
py_out="$2"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
bindgen=(cargo run --quiet -p tidewire-swift --bin uniffi-bindgen -- generate --library "$lib")
"${bindgen[@]}" --language swift --out-dir "$tmp/swift" >/dev/null 2>&1 || "${bindgen[@]}" --language swift --out-dir "$tmp/swift"
mkdir -p "$here/Sources/Tidewire" "$here/Sources/TidewireFFI/include"
cp "$tmp/swift/tidewire_swift.swift" "$here/Sources/Tidewire/Tidewire.swift"
cp "$tmp/swift/tidewire_swiftFFI.h" "$here/Sources/TidewireFFI/include/tidewire_swiftFFI.h"
cp "$tmp/swift/tidewire_swiftFFI.modulemap" "$here/Sources/TidewireFFI/include/module.modulemap"
"${bindgen[@]}" --language kotlin --no-format --out-dir "$tmp/kotlin" >/dev/null
rm -rf "$here/kotlin/src/main/kotlin"
mkdir -p "$here/kotlin/src/main/kotlin"
cp -r "$tmp/kotlin/." "$here/kotlin/src/main/kotlin/"
mkdir -p "$py_out"
"${bindgen[@]}" --language python --out-dir "$py_out" >/dev/null
cp "$lib" "$py_out/"
