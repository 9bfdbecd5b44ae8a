#!/usr/bin/env bash
# Runs the README's first command literally, in a fresh clone of the tree
# (the working tree's tracked changes included), and waits for /healthz, then asks for the web app at /:
# a newcomer's first step must start the reference server on its embedded
# default (no Redis, no secret). CARGO_TARGET_DIR is shared when set.
set -euo pipefail

root=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)
# The first line of the block under "## The two commands", comment removed.
cmd=$(awk '/^## The two commands/ { f = 1 } f && /^```sh/ { getline; print; exit }' "$root/README.md" | sed 's/[[:space:]]*#.*$//')
if [ -z "$cmd" ]; then
  echo "readme-first-command: no command found under '## The two commands' in README.md" >&2
  exit 1
fi
echo "readme-first-command: $cmd"

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -TERM -- "-$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

rev=$(git -C "$root" stash create)
git clone -q --shared "$root" "$work/tree"
git -C "$work/tree" checkout -q "${rev:-HEAD}"

# Port 3000 as the README says, unless something here already holds it.
port_env=()
if (exec 3<>/dev/tcp/127.0.0.1/3000) 2>/dev/null; then
  echo "readme-first-command: 127.0.0.1:3000 is taken here; PORT=0 picks a free port"
  port_env=(PORT=0)
fi

log="$work/server.log"
(cd "$work/tree" && exec setsid env -u REDIS_URL -u JWT_SECRET -u HOST -u TIDEWIRE_DATA_DIR -u DATABASE_URL "${port_env[@]}" bash -c "$cmd") >"$log" 2>&1 &
pid=$!

# A release build from scratch takes minutes on two cores.
deadline=$((SECONDS + 1800))
url=""
while [ -z "$url" ]; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "readme-first-command: the command exited before listening:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  if [ $SECONDS -ge $deadline ]; then
    echo "readme-first-command: not listening after 30 minutes" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  url=$(sed -n 's/^tidewire-server listening on \(http:[^ ]*\).*/\1/p' "$log" | head -n 1)
  [ -n "$url" ] || sleep 1
done

status=$(python3 - "$url/healthz" <<'PY'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    print(r.status, r.read().decode())
PY
)
if [ "$status" != "200 ok" ]; then
  echo "readme-first-command: GET /healthz answered '$status'" >&2
  exit 1
fi
echo "readme-first-command: $url/healthz answered 200 ok"

# The chat's web app, from the bundle committed and embedded (no Node here).
page=$(python3 - "$url/" <<'PY'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    print(r.status, r.headers.get("Content-Type"), '<div id="root">' in r.read().decode())
PY
)
if [ "$page" != "200 text/html; charset=utf-8 True" ]; then
  echo "readme-first-command: GET / answered '$page', not the web app" >&2
  exit 1
fi
echo "readme-first-command: $url/ serves the web app"
