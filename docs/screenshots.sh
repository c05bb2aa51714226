#!/usr/bin/env bash
# Full-page screenshots of the built documentation site and of the committed HTML reports, at a
# 1400-px window, as a reader sees them. Run after `make docs`:
#
#     bash docs/screenshots.sh [SITE_DIR] [OUT_DIR]      # defaults: build/site build/screenshots
#
# Needs Debian's chromium (`apt-get install -y chromium`) and node >= 20 (for its WebSocket). The
# site is served over http on a free local port; every page and report becomes OUT_DIR/NAME.png.
set -euo pipefail
SITE=${1:-build/site}
OUT=${2:-build/screenshots}
PORT=${PORT:-8765}
DEBUG_PORT=${DEBUG_PORT:-9333}
[ -d "$SITE" ] || { echo "$SITE: no built site; run make docs first" >&2; exit 2; }
PY=${PYTHON:-python3}
$PY -m http.server "$PORT" --bind 127.0.0.1 --directory "$SITE" >/dev/null 2>&1 &
SERVER=$!
PROFILE=$(mktemp -d)
chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$PROFILE" \
  --remote-debugging-port="$DEBUG_PORT" about:blank >/dev/null 2>&1 &
BROWSER=$!
trap 'kill $SERVER $BROWSER 2>/dev/null; wait $BROWSER 2>/dev/null; rm -rf "$PROFILE"' EXIT
for _ in $(seq 50); do
  WS=$(curl -s "http://127.0.0.1:$DEBUG_PORT/json/version" | $PY -c 'import json,sys; print(json.load(sys.stdin)["webSocketDebuggerUrl"])' 2>/dev/null) && break
  sleep 0.2
done
# every page of the site (search and 404 pages excepted), then the self-contained reports
PAGES=$(cd "$SITE" && find . -name index.html -not -path './search/*' | sed 's|^\./||; s|index.html$||' | sort)
URLS=("http://127.0.0.1:$PORT/")  # the home page
for p in $PAGES; do URLS+=("http://127.0.0.1:$PORT/$p"); done
for r in $(cd "$SITE" && find results examples -name report.html 2>/dev/null | sort); do URLS+=("http://127.0.0.1:$PORT/$r"); done
node --experimental-websocket --no-warnings "$(dirname "$0")/screenshots.mjs" "$WS" "$OUT" "${URLS[@]}"
echo "screenshots in $OUT"
