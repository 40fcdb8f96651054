# shellcheck shell=bash
# The toolchain recipe for cosell's Rust mapping components (core wasm modules for
# wasm32-unknown-unknown). Sourced, never run: guest-mappings/build.sh and the build.sh of every
# project made by `cosell mapping new --lang rust` (which carries a copy of this file) call
#
#   guest_toolchain_detect             # sets GUEST_TOOLCHAIN (or exits saying what to install)
#   guest_toolchain_env <remap>...     # exports the flags; sets the GUEST_CARGO_ARGS array
#
# then run `cargo build --target "$GUEST_TARGET" "${GUEST_CARGO_ARGS[@]}" ...`.
#
# Toolchain paths, in order of preference:
#   1. "installed": a wasm32-unknown-unknown standard library installed for the active rustc
#      (e.g. `rustup target add wasm32-unknown-unknown`).
#   2. "build-std": Debian's rustc-web + rust-web-src (/usr/bin/rustc and the std source under
#      /usr/lib/rustlib/src/rust): std is built from source with -Zbuild-std (RUSTC_BOOTSTRAP=1)
#      and linked with rust-lld from the rustup toolchain (or wasm-ld from Debian's lld).
# Force one with COSELL_GUEST_TOOLCHAIN=installed|build-std. Other knobs: COSELL_STD_RUSTC
# (default /usr/bin/rustc), COSELL_WASM_LINKER (a rust-lld or wasm-ld binary).
# RUSTFLAGS / CARGO_ENCODED_RUSTFLAGS from the environment are dropped (they are usually meant
# for native builds). Every external command runs under `timeout`.

GUEST_TARGET=wasm32-unknown-unknown
GUEST_STD_RUSTC="${COSELL_STD_RUSTC:-/usr/bin/rustc}"
GUEST_TOOLCHAIN=""
GUEST_STD_SRC=""
GUEST_LINKER=""
GUEST_CARGO_ARGS=()

declare -F say >/dev/null || say() { printf '==> %s\n' "$*" >&2; }
declare -F die >/dev/null || die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Path 1: the active rustc has a wasm32-unknown-unknown std installed.
guest_installed_target() {
    if compgen -G "$GUEST_SYSROOT/lib/rustlib/$GUEST_TARGET/lib/libstd-*.rlib" >/dev/null; then
        return 0
    fi
    # rustup may know better (e.g. a toolchain override); never let it hang.
    if command -v rustup >/dev/null; then
        timeout 10 rustup target list --installed 2>/dev/null | grep -qx "$GUEST_TARGET" && return 0
    fi
    return 1
}

# Path 2: Debian rustc-web + rust-web-src, std built from source, linked with rust-lld/wasm-ld.
guest_build_std_available() {
    [ -x "$GUEST_STD_RUSTC" ] || return 1
    local std_sysroot
    std_sysroot="$(timeout 30 "$GUEST_STD_RUSTC" --print sysroot 2>/dev/null)" || return 1
    GUEST_STD_SRC="$std_sysroot/lib/rustlib/src/rust/library"
    [ -f "$GUEST_STD_SRC/std/Cargo.toml" ] || return 1
    local candidate
    for candidate in \
        "${COSELL_WASM_LINKER:-}" \
        "$GUEST_SYSROOT/lib/rustlib/$GUEST_HOST_TRIPLE/bin/rust-lld" \
        "$std_sysroot/lib/rustlib/$GUEST_HOST_TRIPLE/bin/rust-lld" \
        "$(command -v rust-lld || true)" \
        "$(command -v wasm-ld || true)" \
        "$(compgen -G '/usr/bin/wasm-ld-*' | sort -V | tail -n 1 || true)"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then
            GUEST_LINKER="$candidate"
            return 0
        fi
    done
    return 1
}

# Picks the toolchain path (GUEST_TOOLCHAIN=installed|build-std) and says which, or exits with
# what to install.
guest_toolchain_detect() {
    command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) first"
    command -v rustc >/dev/null || die "rustc not found: install Rust (https://rustup.rs) first"
    GUEST_SYSROOT="$(timeout 30 rustc --print sysroot)" || die "'rustc --print sysroot' failed or timed out"
    GUEST_HOST_TRIPLE="$(timeout 30 rustc -vV | sed -n 's/^host: //p')" || die "'rustc -vV' failed or timed out"

    case "${COSELL_GUEST_TOOLCHAIN:-}" in
        installed) guest_installed_target || die "COSELL_GUEST_TOOLCHAIN=installed but $GUEST_TARGET is not installed for $(command -v rustc)"; GUEST_TOOLCHAIN=installed ;;
        build-std) guest_build_std_available || die "COSELL_GUEST_TOOLCHAIN=build-std but $GUEST_STD_RUSTC, its std source or a wasm linker is missing"; GUEST_TOOLCHAIN=build-std ;;
        "")
            if guest_installed_target; then
                GUEST_TOOLCHAIN=installed
            elif guest_build_std_available; then
                GUEST_TOOLCHAIN=build-std
            fi
            ;;
        *) die "COSELL_GUEST_TOOLCHAIN must be 'installed' or 'build-std'" ;;
    esac

    if [ -z "$GUEST_TOOLCHAIN" ]; then
        cat >&2 <<EOM
error: no way to build $GUEST_TARGET components on this machine.
  Either install the target for your Rust toolchain:
      rustup target add $GUEST_TARGET
  or (Debian/Ubuntu, when rustup cannot download targets) install rustc-web and its std source:
      apt-get install -y rustc-web rust-web-src
  (build-std also needs rust-lld from a rustup toolchain, or wasm-ld: apt-get install -y lld)
EOM
        exit 1
    fi

    if [ "$GUEST_TOOLCHAIN" = installed ]; then
        say "toolchain: installed $GUEST_TARGET target ($(timeout 30 rustc --version), sysroot $GUEST_SYSROOT)"
    else
        say "toolchain: build-std fallback ($(timeout 30 "$GUEST_STD_RUSTC" --version); std source $GUEST_STD_SRC; linker $GUEST_LINKER)"
    fi
}

# Exports the compiler flags and environment for the detected toolchain and sets
# GUEST_CARGO_ARGS. Each argument is a `--remap-path-prefix` mapping (FROM=TO); $CARGO_HOME is
# always mapped to /cargo, so panic locations do not leak machine paths and the same sources
# give the same bytes on every machine. (Target-only flags: with --target, cargo does not
# apply them to build scripts or proc macros.)
guest_toolchain_env() {
    local cargo_home="${CARGO_HOME:-$HOME/.cargo}"
    local flags=() mapping
    for mapping in "$@"; do
        flags+=("--remap-path-prefix=$mapping")
    done
    flags+=("--remap-path-prefix=$cargo_home=/cargo")
    unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS
    GUEST_CARGO_ARGS=()
    if [ "$GUEST_TOOLCHAIN" = build-std ]; then
        flags+=("-Clinker=$GUEST_LINKER")
        GUEST_CARGO_ARGS+=(-Zbuild-std=std,panic_abort)
        export RUSTC="$GUEST_STD_RUSTC" RUSTC_BOOTSTRAP=1
    else
        unset RUSTC RUSTC_BOOTSTRAP
    fi
    CARGO_ENCODED_RUSTFLAGS="$(IFS=$'\x1f'; printf '%s' "${flags[*]}")"
    export CARGO_ENCODED_RUSTFLAGS
}
