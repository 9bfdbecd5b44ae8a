#!/usr/bin/env bash
# Runs socket.io's own server tests (socketio/socket.io, packages/socket.io)
# three times: stock, with Tidewire's Engine bound, and with Tidewire's Engine
# and adapter. socket.io's tests are not in this repo and not on npm: pass a
# checkout of socketio/socket.io.
#   bindings-node/conformance/run-socket.io-suite.sh <socket.io checkout> [mocha args]
# The addon must be built (make binding-node). Reports land in
# $OUT (default target/socket.io-suite): one mocha JSON report per mode.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="${1:?usage: $0 <socket.io checkout> [mocha args]}"
shift
[ -d "$src/packages/socket.io/test" ] || { echo "$src: not a socketio/socket.io checkout" >&2; exit 1; }
out="${OUT:-$here/../../target/socket.io-suite}"
work="$out/socket.io"
mkdir -p "$out"
rm -rf "$work"
# The package's sources and tests, with what they need from npm (the
# monorepo's root manifest pulls in browsers and bundlers: not needed).
cp -r "$src/packages/socket.io" "$work"
cp "$here/package.json" "$work/package.json"
node -e 'const p=require(process.argv[1]);p.name="socket.io";p.version=require(process.argv[2]).version;p.main="./lib/index.ts";require("fs").writeFileSync(process.argv[1],JSON.stringify(p,null,2))' \
  "$work/package.json" "$src/packages/socket.io/package.json"
(cd "$work" && npm install --no-audit --no-fund --loglevel=error)
mkdir -p "$work/client-dist"
cp "$work"/node_modules/socket.io-client/dist/* "$work/client-dist/"
# Every test file but uWebSockets.js's (not on npm).
files=()
for f in "$work"/test/*.ts; do
  case "$(basename "$f")" in index.ts | uws.ts | *.test-d.ts) ;; *) files+=("test/$(basename "$f")") ;; esac
done

for mode in stock engine engine+adapter; do
  engine=0 adapter=0
  case "$mode" in engine) engine=1 ;; engine+adapter) engine=1 adapter=1 ;; esac
  echo "==> socket.io's tests: $mode"
  (cd "$work" && TIDEWIRE_NODE="$here/.." TIDEWIRE_ENGINE=$engine TIDEWIRE_ADAPTER=$adapter \
    npx mocha --import=tsx --require "$here/socket.io-suite.cjs" --timeout 10000 --exit \
      --reporter json --reporter-option "output=$out/$mode.json" "$@" "${files[@]}") || true
  node -e 'const r=require(process.argv[1]).stats;console.log(`${process.argv[2]}: ${r.passes} passed, ${r.failures} failed, ${r.pending} pending`)' "$out/$mode.json" "$mode"
done

