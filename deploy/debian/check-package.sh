#!/usr/bin/env bash
# The test of the Debian package (`make package-check`, run by CI after `make test`): installs
# the .deb with dpkg on this machine, checks what an operator relies on, and purges it again,
# also when a check fails, so that a rerun starts from the same place.
#
#   - the files, their owners and modes (the configuration and the admin token root:cosell
#     0640, the state directory cosell 0700), the conffile, the `cosell` system user;
#   - installing again (an upgrade) keeps the admin token and an edited configuration;
#   - the installed `cosell --version` is the package's version;
#   - `cosell mapping test` runs each installed default component on the repository's sample
#     and gives the expected output, under the installed configuration's limits;
#   - `cosell config check` of the installed configuration passes as the cosell user;
#   - `cosell serve` of the installed configuration (on a free port instead of 8686), run as
#     the cosell user, answers /healthz serving both default steps, and `cosell mapping list`
#     reaches it with the generated token (--token-file);
#   - `systemd-analyze verify` of the installed unit prints nothing (it only warns on typos,
#     with exit code 0, so any output fails) and its exposure score stays under the bound;
#   - purging removes the files, the token and the state directory.
#
# Usage (as root): deploy/debian/check-package.sh path/to/cosell.deb
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

deb=${1:?usage: $0 path/to/cosell.deb}
# The unit's exposure (systemd-analyze security, 0 = fully locked down, 10 = unprotected) may not
# rise above this; ours is 1.4 today. Raise it only with a reason.
max_exposure=${COSELL_MAX_EXPOSURE:-2.0}
fixtures=guest-mappings/fixtures
started=$(date +%s)
failures=0

[ "$(id -u)" = 0 ] || { echo "check-package.sh installs a package: run it as root" >&2; exit 2; }
[ -f "$deb" ] || { echo "no package at $deb: run \`make package\` first" >&2; exit 2; }

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
ok() { echo "ok: $*"; }

purge() { dpkg --purge cosell >/dev/null 2>&1 || true; }

# A GET's body (python3 rather than curl, which a CI machine may lack).
http_get() {
    python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())' "$1"
}

work=$(mktemp -d)
serve_pid=
cleanup() {
    if [ -n "$serve_pid" ]; then kill "$serve_pid" 2>/dev/null || true; fi
    purge
    rm -rf "$work"
}
trap cleanup EXIT

# Whatever an earlier, interrupted run left.
purge
echo "==> installing $deb"
dpkg -i "$deb"

# --- Files, owners, modes.
expect_stat() { # path "owner:group mode"
    local got
    got=$(stat -c '%U:%G %a' "$1" 2>/dev/null || echo missing)
    if [ "$got" = "$2" ]; then ok "$1 is $2"; else fail "$1 is $got, expected $2"; fi
}
expect_stat /usr/bin/cosell "root:root 755"
expect_stat /usr/share/cosell/mappings/referral_to_opportunity.wasm "root:root 644"
expect_stat /usr/share/cosell/mappings/opportunity_to_referral.wasm "root:root 644"
expect_stat /usr/share/cosell/mappings/pass_through.wasm "root:root 644"
expect_stat /etc/cosell "root:cosell 750"
expect_stat /etc/cosell/cosell.toml "root:cosell 640"
expect_stat /etc/cosell/admin-token "root:cosell 640"
expect_stat /etc/cosell/cosell.env "root:cosell 640"
expect_stat /etc/cosell/secrets "root:cosell 750"
expect_stat /var/lib/cosell "cosell:cosell 700"
if grep -qxE '[0-9a-f]{64}' /etc/cosell/admin-token; then
    ok "the admin token is 64 hex digits"
else
    fail "the admin token is not 64 hex digits"
fi
if [ "$(getent passwd cosell | cut -d: -f7)" = /usr/sbin/nologin ]; then
    ok "the cosell user has no login shell"
else
    fail "the cosell user: $(getent passwd cosell || echo missing)"
fi
if dpkg-query -W -f='${Conffiles}' cosell | grep -q ' /etc/cosell/cosell.toml '; then
    ok "/etc/cosell/cosell.toml is a conffile"
else
    fail "/etc/cosell/cosell.toml is not a conffile"
fi
unit=$(dpkg -L cosell | grep -E '/systemd/system/cosell\.service$' || true)
[ -n "$unit" ] || fail "the package holds no cosell.service"

# Installing again (as an upgrade does) keeps the token and an operator's edit of the
# configuration, and its owner and mode.
token=$(sha256sum </etc/cosell/admin-token)
echo "# an operator's edit" >>/etc/cosell/cosell.toml
dpkg -i --force-confdef --force-confold "$deb" >/dev/null
if [ "$(sha256sum </etc/cosell/admin-token)" = "$token" ] &&
    grep -q "^# an operator's edit$" /etc/cosell/cosell.toml; then
    ok "installing again keeps the admin token and the edited configuration"
else
    fail "installing again replaced the admin token or the edited configuration"
fi
expect_stat /etc/cosell/cosell.toml "root:cosell 640"

# --- The installed binary.
version=$(dpkg-query -W -f='${Version}' cosell)
reported=$(/usr/bin/cosell --version)
if [ "$reported" = "cosell ${version%-*}" ]; then
    ok "cosell --version: $reported"
else
    fail "cosell --version says '$reported', the package is $version"
fi

# --- The installed components, under the installed configuration's limits.
map_check() { # component direction step: every repository fixture of the direction passes
    local out="$work/$1.fixtures.out"
    if /usr/bin/cosell mapping test "/usr/share/cosell/mappings/$1" --fixtures "$fixtures/$2" \
        --step "$3" --limits-from /etc/cosell/cosell.toml >"$out" 2>&1; then
        ok "cosell mapping test $1 --fixtures: $(tail -n 1 "$out")"
    else
        cat "$out" >&2
        fail "cosell mapping test $1 --fixtures $fixtures/$2 failed"
    fi
}
map_check referral_to_opportunity.wasm partner-center-to-crm referral-to-opportunity
map_check opportunity_to_referral.wasm crm-to-partner-center opportunity-to-referral

# --- The installed configuration, checked and served as the service's user.
if out=$(runuser -u cosell -- /usr/bin/cosell config check --config /etc/cosell/cosell.toml 2>&1); then
    ok "cosell config check of /etc/cosell/cosell.toml"
else
    echo "$out" >&2
    fail "cosell config check of /etc/cosell/cosell.toml"
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
install -d -o root -g cosell -m 0750 "$work/etc"
sed "s/^listen = \"127.0.0.1:8686\"/listen = \"127.0.0.1:$port\"/" /etc/cosell/cosell.toml >"$work/etc/cosell.toml"
chgrp cosell "$work/etc/cosell.toml"
chmod 0640 "$work/etc/cosell.toml"
chmod 0711 "$work"
grep -q "127.0.0.1:$port" "$work/etc/cosell.toml" || fail "the packaged configuration has no admin listen line to move"
runuser -u cosell -- /usr/bin/cosell serve --config "$work/etc/cosell.toml" >"$work/serve.log" 2>&1 &
serve_pid=$!
health=
for _ in $(seq 1 120); do
    if health=$(http_get "http://127.0.0.1:$port/healthz" 2>/dev/null); then break; fi
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 0.5
done
if [ -n "$health" ] && echo "$health" | grep -q referral-to-opportunity &&
    echo "$health" | grep -q opportunity-to-referral; then
    ok "cosell serve of the installed configuration answers /healthz with both steps"
else
    cat "$work/serve.log" >&2
    fail "cosell serve of the installed configuration: /healthz answered '${health}'"
fi
if out=$(/usr/bin/cosell mapping list --admin-url "http://127.0.0.1:$port" \
    --token-file /etc/cosell/admin-token 2>&1) && echo "$out" | grep -q referral-to-opportunity; then
    ok "cosell mapping list with --token-file /etc/cosell/admin-token"
else
    echo "$out" >&2
    fail "cosell mapping list with the generated admin token"
fi
kill -TERM "$serve_pid" 2>/dev/null || true
for _ in $(seq 1 60); do kill -0 "$serve_pid" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$serve_pid" 2>/dev/null; then
    fail "cosell serve did not stop within 30 s of SIGTERM"
    kill -KILL "$serve_pid" 2>/dev/null || true
fi
wait "$serve_pid" 2>/dev/null || true
serve_pid=
expect_stat /var/lib/cosell/cosell.db "cosell:cosell 600"

# --- The unit.
if [ -n "$unit" ]; then
    if out=$(systemd-analyze verify "$unit" 2>&1) && [ -z "$out" ]; then
        ok "systemd-analyze verify $unit: silent"
    else
        fail "systemd-analyze verify $unit: ${out:-exit code $?}"
    fi
    # The threshold is the exposure times ten.
    threshold=$(python3 -c "print(int(round(float('$max_exposure') * 10)))")
    if out=$(systemd-analyze --offline=true --threshold="$threshold" security "$unit" 2>&1); then
        ok "unit exposure: $(echo "$out" | tail -n 1 | sed 's/.*exposure level for //') (at most $max_exposure)"
    else
        echo "$out" | grep -E '^✗|Overall' >&2 || echo "$out" >&2
        fail "the unit's exposure is above $max_exposure"
    fi
fi

# --- Purge.
purge
for gone in /usr/bin/cosell /usr/share/cosell /etc/cosell "$unit" /var/lib/cosell; do
    if [ -e "$gone" ]; then fail "$gone is left after the purge"; fi
done
[ "$failures" = 0 ] && ok "purge removes the files, the token and the state"

echo "package check: $failures failure(s), $(($(date +%s) - started)) s"
[ "$failures" = 0 ]
