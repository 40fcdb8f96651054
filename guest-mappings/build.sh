#!/usr/bin/env bash
# Builds every mapping component in guest-mappings/components (core wasm modules for
# wasm32-unknown-unknown, with the WIT world embedded by wit-bindgen) and copies them to
# guest-mappings/dist/:
#
#   dist/referral_to_opportunity.wasm, dist/opportunity_to_referral.wasm, dist/pass_through.wasm
#   dist/testing/{version_stamp,infinite_loop,memory_bomb,deep_recursion,panics,
#                 oversized_output,deep_output,wasi_prober,other_world,
#                 poisoned_referral_to_opportunity,
#                 renamed_referral_to_opportunity}.wasm
#   dist/examples/stamp_team.wasm (the two-step pipeline example, examples/two-step)
#
# Usage: build.sh [--release] [--check-toolchain]
#   --release          optimised build (profile.release: opt-level 3, LTO, panic=abort)
#   --check-toolchain  only report which toolchain path would be used, build nothing
#
# The toolchain (an installed wasm32-unknown-unknown target, or std built from source with
# Debian's rustc-web) is chosen by toolchain.sh, next to this script, which every Rust project
# made by `cosell mapping new` carries too; see there for COSELL_GUEST_TOOLCHAIN and the other
# knobs. COSELL_BUILD_TIMEOUT: seconds for the cargo build (default 1800). The target dir
# guest-mappings/components/target (or $CARGO_TARGET_DIR) is kept between runs.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
COMPONENTS="$HERE/components"
DIST="$HERE/dist"
BUILD_TIMEOUT="${COSELL_BUILD_TIMEOUT:-1800}"

# crate output name -> path under dist/
ARTIFACTS=(
    "referral_to_opportunity:referral_to_opportunity.wasm"
    "opportunity_to_referral:opportunity_to_referral.wasm"
    "pass_through:pass_through.wasm"
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
    "stamp_team:examples/stamp_team.wasm"
)

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

RELEASE=0
CHECK_ONLY=0
for arg in "$@"; do
    case "$arg" in
        --release) RELEASE=1 ;;
        --check-toolchain) CHECK_ONLY=1 ;;
        -h | --help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$arg' (usage: build.sh [--release] [--check-toolchain])" ;;
    esac
done

# shellcheck source=toolchain.sh
source "$HERE/toolchain.sh"
guest_toolchain_detect
if [ "$CHECK_ONLY" = 1 ]; then
    echo "$GUEST_TOOLCHAIN"
    exit 0
fi

# --- build --------------------------------------------------------------------------------------

if [ "$RELEASE" = 1 ]; then PROFILE_DIR=release; PROFILE_ARGS=(--release); else PROFILE_DIR=debug; PROFILE_ARGS=(); fi

guest_toolchain_env "$REPO=/cosell"
CARGO_ARGS=(build --manifest-path "$COMPONENTS/Cargo.toml" --target "$GUEST_TARGET" --workspace "${PROFILE_ARGS[@]}" "${GUEST_CARGO_ARGS[@]}")

say "building components ($PROFILE_DIR profile) in $COMPONENTS"
start=$SECONDS
timeout "$BUILD_TIMEOUT" cargo "${CARGO_ARGS[@]}" \
    || die "cargo build failed (or exceeded ${BUILD_TIMEOUT}s; see the output above)"
say "cargo build finished in $((SECONDS - start))s"

# --- copy to dist -------------------------------------------------------------------------------

OUT="${CARGO_TARGET_DIR:-$COMPONENTS/target}/$GUEST_TARGET/$PROFILE_DIR"
mkdir -p "$DIST/testing" "$DIST/examples"
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
