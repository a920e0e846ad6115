#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium and its WebDriver when missing.
# Used by the browser end-to-end test (conformance/test_oidc_e2e_browser.py).
# Needs root (apt-get). Never downloads a browser build of its own.
set -euo pipefail

if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
    exit 0
fi
if [[ "$(id -u)" != "0" ]]; then
    echo "install_chromium.sh: /usr/bin/chromium or /usr/bin/chromedriver missing and not root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
test -x /usr/bin/chromium
test -x /usr/bin/chromedriver
