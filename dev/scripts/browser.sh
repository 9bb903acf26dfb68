#!/usr/bin/env bash
# Installs what the web console's browser test drives (functions/operator/tests/console.rs):
# Debian's Chromium and ChromeDriver, which match each other's version. Does nothing where
# both are there already; on a machine without apt it says what is missing and fails.
set -euo pipefail

chromium=${SAGAFLOW_CHROMIUM:-/usr/bin/chromium}
chromedriver=${SAGAFLOW_CHROMEDRIVER:-/usr/bin/chromedriver}

if [ -x "$chromium" ] && [ -x "$chromedriver" ]; then
    exit 0
fi
if ! command -v apt-get > /dev/null; then
    echo "browser.sh: $chromium or $chromedriver is missing and there is no apt-get to install them" >&2
    echo "browser.sh: install Chromium and a matching ChromeDriver, and set SAGAFLOW_CHROMIUM and SAGAFLOW_CHROMEDRIVER" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
    sudo=sudo
fi
echo "browser.sh: installing chromium and chromium-driver (once)"
log=$(mktemp)
if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver; } > "$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "browser.sh: apt-get could not install chromium and chromium-driver" >&2
    exit 1
fi
rm -f "$log"
"$chromium" --version
