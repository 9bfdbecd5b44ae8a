#!/usr/bin/env bash
# Builds the Android native libraries (jniLibs for arm64-v8a, armeabi-v7a,
# x86_64, x86) with cargo-ndk into kotlin/src/main/jniLibs, beside the
# generated Kotlin (kotlin/src/main/kotlin), ready for an Android library
# module (AAR) that depends on net.java.dev.jna:jna (aar) and
# kotlinx-coroutines. Needs the Android NDK (ANDROID_NDK_HOME) and cargo-ndk.
# Usage: scripts/build-android.sh [--check] [ABI...]
#   --check  only checks that the tools are there (runs anywhere).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="$(cd "$here/.." && pwd)"
check=0
if [ "${1:-}" = "--check" ]; then check=1; shift; fi
abis=("$@")
[ ${#abis[@]} -gt 0 ] || abis=(arm64-v8a armeabi-v7a x86_64 x86)
declare -A triple=([arm64-v8a]=aarch64-linux-android [armeabi-v7a]=armv7-linux-androideabi
  [x86_64]=x86_64-linux-android [x86]=i686-linux-android)

missing=()
command -v cargo >/dev/null || missing+=(cargo)
cargo ndk --version >/dev/null 2>&1 || missing+=("cargo-ndk (cargo install cargo-ndk)")
[ -n "${ANDROID_NDK_HOME:-}" ] && [ -d "${ANDROID_NDK_HOME:-}" ] || missing+=("the Android NDK (ANDROID_NDK_HOME)")
if [ $check -eq 1 ]; then
  if [ ${#missing[@]} -gt 0 ]; then
    echo "build-android: cannot run here (missing: ${missing[*]})" >&2
  else
    echo "build-android: tools present"
  fi
  exit 0
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "build-android: missing ${missing[*]}" >&2
  exit 1
fi

for abi in "${abis[@]}"; do
  [ -n "${triple[$abi]:-}" ] || { echo "build-android: unknown ABI $abi" >&2; exit 1; }
  rustup target add "${triple[$abi]}"
done
ndk_args=()
for abi in "${abis[@]}"; do ndk_args+=(-t "$abi"); done
cargo ndk "${ndk_args[@]}" -o "$here/kotlin/src/main/jniLibs" \
  build --release -p tidewire-swift --lib --manifest-path "$root/Cargo.toml"
echo "built $here/kotlin/src/main/jniLibs (${abis[*]})"
echo "Android apps must also call rustls-platform-verifier's Android initialisation (see README)."
