#!/usr/bin/env bash
# Builds every mapping component in guest-mappings/components (core wasm modules for
# wasm32-unknown-unknown, with the WIT world embedded by wit-bindgen) and copies them to
# guest-mappings/dist/:
#
#   dist/referral_to_opportunity.wasm, dist/opportunity_to_referral.wasm
#   dist/testing/{version_stamp,infinite_loop,memory_bomb,deep_recursion,panics,
#                 oversized_output,deep_output,wasi_prober,other_world,
#                 poisoned_referral_to_opportunity,
#                 renamed_referral_to_opportunity}.wasm
#
# Usage: build.sh [--release] [--check-toolchain]
#   --release          optimised build (profile.release: opt-level 3, LTO, panic=abort)
#   --check-toolchain  only report which toolchain path would be used, build nothing
#
# Toolchain paths, in order of preference:
#   1. "installed": a wasm32-unknown-unknown standard library installed for the active rustc
#      (e.g. `rustup target add wasm32-unknown-unknown`).
#   2. "build-std": Debian's rustc-web + rust-web-src (/usr/bin/rustc and the std source under
#      /usr/lib/rustlib/src/rust): std is built from source with -Zbuild-std (RUSTC_BOOTSTRAP=1)
#      and linked with rust-lld from the rustup toolchain (or wasm-ld from Debian's lld).
# Force one with COSELL_GUEST_TOOLCHAIN=installed|build-std.
#
# Other knobs: COSELL_STD_RUSTC (default /usr/bin/rustc), COSELL_WASM_LINKER (a rust-lld or
# wasm-ld binary), COSELL_BUILD_TIMEOUT (seconds for the cargo build, default 1800),
# CARGO_BUILD_JOBS. RUSTFLAGS / CARGO_ENCODED_RUSTFLAGS from the environment are ignored (they
# are usually meant for native builds); the target dir guest-mappings/components/target is kept
# between runs.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
COMPONENTS="$HERE/components"
DIST="$HERE/dist"
TARGET=wasm32-unknown-unknown
BUILD_TIMEOUT="${COSELL_BUILD_TIMEOUT:-1800}"
STD_RUSTC="${COSELL_STD_RUSTC:-/usr/bin/rustc}"

# crate output name -> path under dist/
ARTIFACTS=(
    "referral_to_opportunity:referral_to_opportunity.wasm"
    "opportunity_to_referral:opportunity_to_referral.wasm"
    "version_stamp:testing/version_stamp.wasm"
    "infinite_loop:testing/infinite_loop.wasm"
    "memory_bomb:testing/memory_bomb.wasm"
    "deep_recursion:testing/deep_recursion.wasm"
    "panics:testing/panics.wasm"
    "oversized_output:testing/oversized_output.wasm"
    "deep_output:testing/deep_output.wasm"
    "wasi_prober:testing/wasi_prober.wasm"
    "other_world:testing/other_world.wasm"
    "poisoned_referral_to_opportunity:testing/poisoned_referral_to_opportunity.wasm"
    "renamed_referral_to_opportunity:testing/renamed_referral_to_opportunity.wasm"
)

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

RELEASE=0
CHECK_ONLY=0
for arg in "$@"; do
    case "$arg" in
        --release) RELEASE=1 ;;
        --check-toolchain) CHECK_ONLY=1 ;;
        -h | --help) sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$arg' (usage: build.sh [--release] [--check-toolchain])" ;;
    esac
done

command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) first"
command -v rustc >/dev/null || die "rustc not found: install Rust (https://rustup.rs) first"

# --- toolchain detection ------------------------------------------------------------------------

SYSROOT="$(timeout 30 rustc --print sysroot)" || die "'rustc --print sysroot' failed or timed out"
HOST_TRIPLE="$(timeout 30 rustc -vV | sed -n 's/^host: //p')" || die "'rustc -vV' failed or timed out"

# Path 1: the active rustc has a wasm32-unknown-unknown std installed.
installed_target() {
    if compgen -G "$SYSROOT/lib/rustlib/$TARGET/lib/libstd-*.rlib" >/dev/null; then
        return 0
    fi
    # rustup may know better (e.g. a toolchain override); never let it hang.
    if command -v rustup >/dev/null; then
        timeout 10 rustup target list --installed 2>/dev/null | grep -qx "$TARGET" && return 0
    fi
    return 1
}

# Path 2: Debian rustc-web + rust-web-src, std built from source, linked with rust-lld/wasm-ld.
STD_SRC=""
LINKER=""
build_std_available() {
    [ -x "$STD_RUSTC" ] || return 1
    local std_sysroot
    std_sysroot="$(timeout 30 "$STD_RUSTC" --print sysroot 2>/dev/null)" || return 1
    STD_SRC="$std_sysroot/lib/rustlib/src/rust/library"
    [ -f "$STD_SRC/std/Cargo.toml" ] || return 1
    local candidate
    for candidate in \
        "${COSELL_WASM_LINKER:-}" \
        "$SYSROOT/lib/rustlib/$HOST_TRIPLE/bin/rust-lld" \
        "$std_sysroot/lib/rustlib/$HOST_TRIPLE/bin/rust-lld" \
        "$(command -v rust-lld || true)" \
        "$(command -v wasm-ld || true)" \
        "$(compgen -G '/usr/bin/wasm-ld-*' | sort -V | tail -n 1 || true)"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then
            LINKER="$candidate"
            return 0
        fi
    done
    return 1
}

TOOLCHAIN=""
case "${COSELL_GUEST_TOOLCHAIN:-}" in
    installed) installed_target || die "COSELL_GUEST_TOOLCHAIN=installed but $TARGET is not installed for $(command -v rustc)"; TOOLCHAIN=installed ;;
    build-std) build_std_available || die "COSELL_GUEST_TOOLCHAIN=build-std but $STD_RUSTC, its std source or a wasm linker is missing"; TOOLCHAIN=build-std ;;
    "")
        if installed_target; then
            TOOLCHAIN=installed
        elif build_std_available; then
            TOOLCHAIN=build-std
        fi
        ;;
    *) die "COSELL_GUEST_TOOLCHAIN must be 'installed' or 'build-std'" ;;
esac

if [ -z "$TOOLCHAIN" ]; then
    cat >&2 <<EOF
error: no way to build $TARGET components on this machine.
  Either install the target for your Rust toolchain:
      rustup target add $TARGET
  or (Debian/Ubuntu, when rustup cannot download targets) install rustc-web and its std source:
      apt-get install -y rustc-web rust-web-src
  (build-std also needs rust-lld from a rustup toolchain, or wasm-ld: apt-get install -y lld)
EOF
    exit 1
fi

if [ "$TOOLCHAIN" = installed ]; then
    say "toolchain: installed $TARGET target ($(timeout 30 rustc --version), sysroot $SYSROOT)"
else
    say "toolchain: build-std fallback ($(timeout 30 "$STD_RUSTC" --version); std source $STD_SRC; linker $LINKER)"
fi
if [ "$CHECK_ONLY" = 1 ]; then
    echo "$TOOLCHAIN"
    exit 0
fi

# --- build --------------------------------------------------------------------------------------

if [ "$RELEASE" = 1 ]; then PROFILE_DIR=release; PROFILE_ARGS=(--release); else PROFILE_DIR=debug; PROFILE_ARGS=(); fi

# Target-only flags (with --target, cargo does not apply them to build scripts or proc macros).
# Path remapping keeps machine-specific paths out of the modules (panic locations), so the same
# sources give the same bytes on every machine.
CARGO_HOME_DIR="${CARGO_HOME:-$HOME/.cargo}"
FLAGS=("--remap-path-prefix=$REPO=/cosell" "--remap-path-prefix=$CARGO_HOME_DIR=/cargo")
CARGO_ARGS=(build --manifest-path "$COMPONENTS/Cargo.toml" --target "$TARGET" --workspace "${PROFILE_ARGS[@]}")
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS

if [ "$TOOLCHAIN" = build-std ]; then
    FLAGS+=("-Clinker=$LINKER")
    CARGO_ARGS+=(-Zbuild-std=std,panic_abort)
    export RUSTC="$STD_RUSTC" RUSTC_BOOTSTRAP=1
else
    unset RUSTC RUSTC_BOOTSTRAP
fi
CARGO_ENCODED_RUSTFLAGS="$(IFS=$'\x1f'; printf '%s' "${FLAGS[*]}")"
export CARGO_ENCODED_RUSTFLAGS

say "building components ($PROFILE_DIR profile) in $COMPONENTS"
start=$SECONDS
timeout "$BUILD_TIMEOUT" cargo "${CARGO_ARGS[@]}" \
    || die "cargo build failed (or exceeded ${BUILD_TIMEOUT}s; see the output above)"
say "cargo build finished in $((SECONDS - start))s"

# --- copy to dist -------------------------------------------------------------------------------

OUT="$COMPONENTS/target/$TARGET/$PROFILE_DIR"
mkdir -p "$DIST/testing"
for entry in "${ARTIFACTS[@]}"; do
    crate="${entry%%:*}"
    dest="$DIST/${entry#*:}"
    src="$OUT/$crate.wasm"
    [ -f "$src" ] || die "expected build output $src is missing"
    if ! cmp -s "$src" "$dest" 2>/dev/null; then
        cp "$src" "$dest.tmp"
        mv -f "$dest.tmp" "$dest"
    fi
    printf '    %-40s %8d bytes\n' "dist/${entry#*:}" "$(wc -c <"$dest")" >&2
done
say "done: $((${#ARTIFACTS[@]})) components in $DIST"
