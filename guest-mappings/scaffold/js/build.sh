#!/usr/bin/env bash
# Builds dist/{{name_snake}}.wasm, the mapping step as a WebAssembly component:
#   1. installs the pinned componentize-js into node_modules/ (`npm ci` from package-lock.json,
#      `npm install` if there is no lock file), unless node_modules/ is already up to date;
#   2. runs `npm run build`: componentize-js builds src/mapping.js against wit/mapping.wit with
#      every optional feature off, so the component imports only the cosell contract.
# Needs Node.js 20.19 or newer with npm, and the npm registry.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

for tool in node npm; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "$tool is missing: install Node.js 20.19 or newer with npm (https://nodejs.org)" >&2
        exit 1
    }
done
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
    echo "Node.js $(node --version) is too old: componentize-js needs 20.19 or newer" >&2
    exit 1
fi

# npm ci writes node_modules/.package-lock.json: newer than the manifests means nothing to do.
stamp=node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ package.json -nt "$stamp" ] || { [ -f package-lock.json ] && [ package-lock.json -nt "$stamp" ]; }; then
    if [ -f package-lock.json ]; then
        timeout "${COSELL_NPM_TIMEOUT:-600}" npm ci --no-audit --no-fund --loglevel=error
    else
        timeout "${COSELL_NPM_TIMEOUT:-600}" npm install --no-audit --no-fund --loglevel=error
    fi
fi

mkdir -p dist
timeout "${COSELL_BUILD_TIMEOUT:-600}" npm run --silent build
echo "built dist/{{name_snake}}.wasm ($(wc -c <dist/{{name_snake}}.wasm) bytes)"
