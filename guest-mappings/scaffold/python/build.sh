#!/usr/bin/env bash
# Builds dist/{{name_snake}}.wasm from app.py with componentize-py, pinned, in a private
# virtualenv (.venv, created on the first run). Needs python3 (3.10 or later) and network
# access to PyPI the first time.
set -euo pipefail
cd "$(dirname "$0")"

COMPONENTIZE_PY_VERSION=0.25.1

if ! .venv/bin/componentize-py --version 2>/dev/null | grep -qx "componentize-py $COMPONENTIZE_PY_VERSION"; then
    python3 -m venv .venv
    timeout 600 .venv/bin/pip install --quiet "componentize-py==$COMPONENTIZE_PY_VERSION"
fi
mkdir -p dist
timeout 600 .venv/bin/componentize-py --quiet -d wit -w cosell:mapping/mapping-step \
    componentize app -o dist/{{name_snake}}.wasm
echo "built dist/{{name_snake}}.wasm"
