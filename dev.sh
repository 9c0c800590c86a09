#!/usr/bin/env bash
# Set-up and routine tasks for circuits, on a fresh Debian machine or an existing one.
#
#   bash dev.sh demo    the main job: the demo of the library (see README)
#   bash dev.sh test    every check: ruff, mypy, the docs site (mkdocs build --strict), the test
#                       suite (docs included) in three legs (numpy 2.x, numpy 1.26, and the peer
#                       tests against torch and TransformerLens)
#
# Each creates or reuses virtual environments (.venv or $VENV; $COMPAT_VENV, $PEER_VENV for the
# other legs) and installs what they need, Graphviz's `dot` included (through apt-get).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

VENV=${VENV:-.venv}
COMPAT_VENV=${COMPAT_VENV:-.venv-numpy1}
PEER_VENV=${PEER_VENV:-.venv-peer}
# The peer leg's pins. torch first and on its own, at this exact CPU build: any other spec, or
# letting transformer-lens choose, downloads a CUDA build of several gigabytes.
PEER_TORCH=torch==2.13.0
# transformer-lens 2.18 keeps numpy below 2, and the newest pyarrow (which its datasets dependency
# pulls) needs numpy 2: pyarrow 21 is the newest that datasets accepts and numpy 1.26 imports.
PEER_PACKAGES=(transformer-lens==2.18.0 'pyarrow==21.*')

say() { printf '\033[1m[dev.sh]\033[0m %s\n' "$*" >&2; }

apt_install() {
    local runner=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { say "need root (or sudo) to install: $*"; exit 1; }
        runner=(sudo)
    fi
    command -v apt-get >/dev/null || { say "please install: $* (no apt-get here)"; exit 1; }
    say "installing system packages: $*"
    "${runner[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${runner[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

ensure_system() {
    local missing=()
    command -v python3 >/dev/null || missing+=(python3)
    python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
    command -v dot >/dev/null || missing+=(graphviz)
    if [ "${1:-}" = browser ]; then  # the HTML report's tests drive Debian's headless Chromium
        [ -x /usr/bin/chromium ] || missing+=(chromium)
        [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
    fi
    if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || { say "circuits needs Python >= 3.10, found $(python3 --version)"; exit 1; }
}

# ensure_venv DIR [--extras LIST] [--first SPEC] [EXTRA PIP ARGS...]: create DIR if needed and
# install the project with its extras LIST (default dev) into it (after SPEC, installed on its
# own), again whenever pyproject.toml or the arguments change.
ensure_venv() {
    local dir=$1; shift
    local extras=dev first=()
    if [ "${1:-}" = --extras ]; then extras=$2; shift 2; fi
    if [ "${1:-}" = --first ]; then first=("$2"); shift 2; fi
    local stamp
    stamp=$( (cat pyproject.toml; echo "$extras ${first[*]} $*") | sha256sum | cut -d' ' -f1)
    [ -x "$dir/bin/python" ] || { say "creating $dir"; python3 -m venv "$dir"; }
    if [ "$(cat "$dir/.installed" 2>/dev/null)" != "$stamp" ]; then
        say "installing circuits into $dir"
        "$dir/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
        if [ ${#first[@]} -gt 0 ]; then
            "$dir/bin/python" -m pip install -q --disable-pip-version-check "${first[@]}"
        fi
        "$dir/bin/python" -m pip install -q --disable-pip-version-check -e ".[$extras]" "$@"
        echo "$stamp" > "$dir/.installed"
    fi
}

# run_tests PYTHON PYTEST ARGS...: the suite under the `ci` Hypothesis profile unless told
# otherwise; a leg whose selection leaves no test (pytest's status 5) passes.
run_tests() {
    local py=$1; shift
    say "pytest $* (numpy $("$py" -c 'import numpy; print(numpy.__version__)'), $py)"
    local status=0
    HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-ci} "$py" -m pytest -q "$@" || status=$?
    [ "$status" -eq 0 ] || [ "$status" -eq 5 ]
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
    demo)  # only what the demo needs: the library, and matplotlib for its heatmaps
        ensure_system
        [ -x "$VENV/bin/python" ] || { say "creating $VENV"; python3 -m venv "$VENV"; }
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[plot]'
        "$VENV/bin/python" -m circuits demo --out build/demo "$@"
        ;;
    test)
        ensure_system browser
        ensure_venv "$VENV" --extras dev,docs
        say "ruff"; "$VENV/bin/python" -m ruff check . && "$VENV/bin/python" -m ruff format --check .
        say "mypy"; "$VENV/bin/python" -m mypy circuits
        say "mkdocs build --strict (into build/site)"; "$VENV/bin/python" -m mkdocs build --strict
        # the peer tests (marked `peer`, tests/conftest.py) run in their own leg, not skipped here
        run_tests "$VENV/bin/python" -m 'not peer' "$@"
        ensure_venv "$COMPAT_VENV" 'numpy==1.26.*'
        run_tests "$COMPAT_VENV/bin/python" -m 'not peer' "$@"
        ensure_venv "$PEER_VENV" --first "$PEER_TORCH" "${PEER_PACKAGES[@]}"
        run_tests "$PEER_VENV/bin/python" -m peer "$@"
        ;;
    *)
        sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
        [ -z "$cmd" ] || { say "unknown command: $cmd"; exit 2; }
        ;;
esac
