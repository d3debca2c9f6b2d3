#!/bin/sh
# System packages some tests use, from Debian/Ubuntu: Chromium (the status page is tested in a
# headless browser) and promtool (from the `prometheus` package; checks /metrics). Installed
# only when missing and apt-get is available; otherwise those tests are skipped with a reason.
set -u
need=""
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need="$need chromium"
command -v promtool >/dev/null 2>&1 || need="$need prometheus"
[ -z "$need" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: no apt-get; install$need yourself, or the browser/promtool tests are skipped"
    exit 0
fi
run=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then run="sudo"; else
        echo "system-deps: not root and no sudo; install$need yourself, or those tests are skipped"
        exit 0
    fi
fi
echo "system-deps: installing$need"
$run apt-get update -qq && DEBIAN_FRONTEND=noninteractive $run apt-get install -y -qq --no-install-recommends $need >/dev/null \
    || echo "system-deps: could not install$need; those tests are skipped"
exit 0
