#!/usr/bin/env bash
# System packages for the demo's browser test (tests/test_demo_served.py): Debian's chromium, which
# Playwright drives at /usr/bin/chromium (`playwright install` downloads its own browser, which fails
# without internet). Idempotent: does nothing when chromium is already there.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    echo "browser-deps: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) already installed"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# With its recommended packages (fonts among them), as the test was measured.
$SUDO apt-get install -y -qq chromium
echo "browser-deps: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) installed"
