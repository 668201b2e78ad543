#!/usr/bin/env bash
# Installs the toolchains that the evaluation sandbox runs generated code with (repolm.eval.runners), from
# Debian packages and, for TypeScript, from npm into .tools/. Only what is missing is installed, so a second run
# costs nothing. A language whose toolchain is still missing afterwards is reported as "skipped" by evaluations,
# never as "failed". Needs root (apt-get); without it, prints what to install and exits 0.
#   python  (the venv's interpreter)     cpp  g++            java  default-jdk-headless + libjavatuples-java
#   js      nodejs                       ts   npm typescript  php   php-cli
#   sh      bash                         go   golang-go       rs    rustc            cs   mono-mcs (+ mono runtime)
# and Chromium (Debian's chromium), in which tests/infer/test_server_page.py drives the server's page through
# Playwright (never `playwright install`); without it that test is skipped.
set -uo pipefail
cd "$(dirname "$0")/.."

missing=()
need() { # need COMMAND PACKAGE: queue PACKAGE when COMMAND is not found
    command -v "$1" >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/$1" ] || missing+=("$2")
}
need g++ g++
need javac default-jdk-headless
[ -f /usr/share/java/javatuples.jar ] || missing+=(libjavatuples-java)
need node nodejs
need npm npm
need php php-cli
need go golang-go
need rustc rustc
need mcs mono-mcs
need mono mono-runtime
need chromium chromium

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "toolchains: missing ${missing[*]}; install them with apt-get (as root) to evaluate those languages"
    else
        echo "toolchains: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
            || echo "toolchains: apt-get could not install ${missing[*]} (those languages will be skipped)"
    fi
fi

if [ ! -x .tools/node_modules/.bin/tsc ] && command -v npm >/dev/null 2>&1; then
    echo "toolchains: installing TypeScript (npm) into .tools/"
    npm install --silent --no-audit --no-fund --prefix .tools typescript@5 >/dev/null \
        || echo "toolchains: npm could not install typescript (TypeScript will be skipped)"
fi
exit 0
