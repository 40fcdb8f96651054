#!/usr/bin/env bash
# Builds dist/{{name_snake}}.wasm: a core wasm module for wasm32-unknown-unknown that carries its
# WIT world (cosell turns it into a component when it is deployed; deploy the file as is).
#
# Usage: ./build.sh [--debug]
#   --debug   the quicker dev profile instead of the optimised release profile
#
# toolchain.sh picks the toolchain: an installed wasm32-unknown-unknown target
# (`rustup target add wasm32-unknown-unknown`), or, where rustup cannot download targets,
# Debian's rustc-web + rust-web-src with the standard library built from source (the first
# build then compiles std: a few minutes). CARGO_TARGET_DIR, when set, is used as the build
# cache (several projects can share one, so std is compiled once); otherwise ./target.
# COSELL_BUILD_TIMEOUT: seconds for the cargo build (default 1800).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROFILE=release
for arg in "$@"; do
    case "$arg" in
        --debug) PROFILE=dev ;;
        -h | --help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) printf 'error: unknown argument %s (usage: ./build.sh [--debug])\n' "$arg" >&2; exit 2 ;;
    esac
done

# shellcheck source=toolchain.sh
source "$HERE/toolchain.sh"
guest_toolchain_detect
# No remapping of this folder's path: the flags stay the same for every project, so a shared
# CARGO_TARGET_DIR keeps one build of std.
guest_toolchain_env

TARGET_DIR="${CARGO_TARGET_DIR:-$HERE/target}"
OUT_DIR=release
[ "$PROFILE" = dev ] && OUT_DIR=debug
say "building {{name}} ($PROFILE profile)"
timeout "${COSELL_BUILD_TIMEOUT:-1800}" cargo build --manifest-path "$HERE/Cargo.toml" \
    --target "$GUEST_TARGET" --profile "$PROFILE" --target-dir "$TARGET_DIR" "${GUEST_CARGO_ARGS[@]}" \
    || die "cargo build failed (or exceeded ${COSELL_BUILD_TIMEOUT:-1800}s; see the output above)"

mkdir -p "$HERE/dist"
cp "$TARGET_DIR/$GUEST_TARGET/$OUT_DIR/{{name_snake}}.wasm" "$HERE/dist/{{name_snake}}.wasm.tmp"
mv -f "$HERE/dist/{{name_snake}}.wasm.tmp" "$HERE/dist/{{name_snake}}.wasm"
say "built dist/{{name_snake}}.wasm ($(wc -c <"$HERE/dist/{{name_snake}}.wasm") bytes)"
