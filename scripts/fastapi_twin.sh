# shellcheck shell=bash
# scripts/fastapi_twin.sh — sourced by scripts/demo.sh and scripts/load.sh: the venv of the
# FastAPI twin (benches/peers/fastapi/app.py), made once and shared by both.
#
# fastapi_venv: make sure fastapi and uvicorn are importable from the venv at $DEMO_VENV
# (default: demo-venv under $CARGO_TARGET_DIR, or under target/), installing them the first time.
# Sets FA_VENV, and FA_SKIP to why not when they cannot be installed (pip's short timeout and one
# retry keep a machine without a package registry from waiting minutes). Needs ROOT and WORK.
# shellcheck disable=SC2034 # FA_SKIP is read by the scripts that source this
fastapi_venv() {
  FA_VENV=${DEMO_VENV:-${CARGO_TARGET_DIR:-$ROOT/target}/demo-venv}
  FA_SKIP=
  if ! "$FA_VENV/bin/python" -c 'import fastapi, uvicorn' 2>/dev/null; then
    echo "  installing fastapi and uvicorn into $FA_VENV (once)"
    if ! { python3 -m venv "$FA_VENV" &&
      "$FA_VENV/bin/pip" install -q --timeout 5 --retries 1 fastapi uvicorn; } >"$WORK/pip.log" 2>&1; then
      FA_SKIP="fastapi and uvicorn could not be installed: $(tail -1 "$WORK/pip.log")"
    fi
  fi
}
