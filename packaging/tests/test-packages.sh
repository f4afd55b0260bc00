#!/usr/bin/env bash
# The package test (issue 6), as CI runs it on a Debian 12 machine, as root:
#
#  1. build the .deb from a clean copy of the tree (packaging/build-deb.sh); lintian, whose
#     errors fail the run;
#  2. build the .rpm (packaging/build-rpm.sh) and compare its payload with the .deb's;
#  3. apt-get install ./transmitter_*.deb, then against the installed files: --version, the
#     user and the conffile's owner and mode, --check-config on the installed conffile (also as
#     the service's user), systemd-analyze verify on the installed units, the man pages, the
#     migrations (those of /usr/share/transmitter/db) applied to a test database, and one end-to-end
#     run of the installed units and binary under a systemd user manager
#     (packaging/tests/e2e_user_manager.py);
#  4. apt-get purge, and no file of the package is left behind.
#
#   packaging/tests/test-packages.sh [--prebuilt] [OUTDIR]    default OUTDIR: build/packages
#
# --prebuilt tests the packages already in OUTDIR (from packaging/build-deb.sh and
# build-rpm.sh) instead of building them.
#
# OUTDIR keeps the packages, the build logs, lintian.txt and test-packages.log. Installing
# the .deb installs it on THIS machine: whatever happens, the package is purged again on exit,
# and the test's broker, database and receiver (tests/env/devenv.sh) are stopped. Nothing
# else is removed (in particular no dependency apt may have installed). It refuses to run
# when a transmitter package is installed already. Ends with "N passed, N failed".
set -uo pipefail
# shellcheck disable=SC2034 # read by lib.sh's pkg_log
PKG_LOG_TAG=test-packages
# shellcheck source=../lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/../lib.sh"
root=$PKG_ROOT
t_start=$(date +%s)

[[ $(id -u) -eq 0 ]] || pkg_die "run as root: it installs and purges the .deb"
prebuilt=0
if [[ ${1:-} == --prebuilt ]]; then
        prebuilt=1
        shift
fi
out=${1:-$root/build/packages}
mkdir -p "$out"
out=$(cd "$out" && pwd)
chmod 0755 "$out"
exec > >(tee "$out/test-packages.log") 2>&1

# One package test at a time on a machine: they install the same package.
exec 9>/run/lock/transmitter-package-test.lock
flock -w 600 9 || pkg_die "another package test holds /run/lock/transmitter-package-test.lock"
if dpkg-query -W -f='${db:Status-Status}' transmitter 2>/dev/null | grep -qv '^not-installed$'; then
        pkg_die "a transmitter package is installed on this machine ($(dpkg-query -W -f='${Version} ${db:Status-Abbrev}' transmitter)):
this test would replace and then purge it; remove it first (apt-get purge transmitter)"
fi

version=$(pkg_version)
work=$(mktemp -d /tmp/transmitter-pkgtest.XXXXXX)
chmod 0755 "$work" # PostgreSQL (user postgres) must reach the devenv below it
devenv=$work/devenv
passed=0 failed=0
installed=0 created_policy=0 created_token=0 devenv_pid='' rpm_pid=''

step() { printf '\n==== %s (%ss) ====\n' "$*" "$(($(date +%s) - t_start))"; }
ok() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
check() { # description command...
        local what=$1
        shift
        if "$@"; then ok "$what"; else fail "$what"; fi
}

apt_get() {
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -y -q "$@"
}

cleanup() {
        local rc=$?
        set +e
        [[ -z $devenv_pid ]] || wait "$devenv_pid" 2>/dev/null
        [[ -z $rpm_pid ]] || wait "$rpm_pid" 2>/dev/null
        if [[ $created_token -eq 1 ]]; then rm -f /etc/transmitter/auth-token; fi
        if [[ $installed -eq 1 ]]; then
                echo "cleanup: purging the transmitter package"
                apt_get purge transmitter >/dev/null 2>&1 || dpkg --purge transmitter >/dev/null 2>&1
        fi
        [[ $created_policy -eq 0 ]] || rm -f /usr/sbin/policy-rc.d
        [[ ! -d $devenv ]] || bash "$root/tests/env/devenv.sh" down "$devenv" >/dev/null 2>&1
        rm -rf "$work"
        exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The broker, database and receiver start (~10-15 s) while the packages build, and the .rpm
# builds while the .deb does (each build has phases that leave a core idle). Its %check is
# skipped: the .deb build runs the same unit suite on this machine.
mkdir -p "$devenv"
bash "$root/tests/env/devenv.sh" up "$devenv" >"$work/devenv-up.log" 2>&1 &
devenv_pid=$!
rpm_pid=
if [[ $prebuilt -eq 0 ]]; then
        RPM_NOCHECK=1 "$root/packaging/build-rpm.sh" "$out" >"$work/rpm.files" 2>"$work/build-rpm.err" &
        rpm_pid=$!
fi

# ---------------------------------------------------------------------------------------------
step "1. build the .deb from a clean tree"
if [[ $prebuilt -eq 1 ]]; then
        deb_files=$(ls "$out"/transmitter_*.deb "$out"/transmitter_*.changes)
        echo "--prebuilt: $(tr '\n' ' ' <<<"$deb_files")"
elif deb_files=$("$root/packaging/build-deb.sh" "$out"); then
        ok "dpkg-buildpackage -b -us -uc"
else
        fail "dpkg-buildpackage -b -us -uc (log: $out/build-deb.log)"
        echo "$passed passed, $failed failed"
        exit 1
fi
deb=$(grep -E '/transmitter_[^/]*\.deb$' <<<"$deb_files")
changes=$(grep -E '\.changes$' <<<"$deb_files")
warnings=$(grep -cE '(^|: )warning:' "$out/build-deb.log")
echo "compiler/meson warnings in the build log: $warnings"

step "lintian"
# As an unprivileged user where possible: lintian warns about running as root.
lintian_cmd=(lintian --info --display-experimental --pedantic --fail-on error --tag-display-limit 0 "$changes")
if id nobody >/dev/null 2>&1; then
        runuser -u nobody -- env HOME=/tmp "${lintian_cmd[@]}" >"$out/lintian.txt" 2>&1
else
        "${lintian_cmd[@]}" >"$out/lintian.txt" 2>&1
fi
lintian_rc=$?
cat "$out/lintian.txt"
[[ -s $out/lintian.txt ]] || echo "(lintian printed nothing)"
check "lintian finds no error (exit $lintian_rc)" test "$lintian_rc" -eq 0

# ---------------------------------------------------------------------------------------------
step "2. build the .rpm and compare its payload with the .deb's"
if [[ $prebuilt -eq 1 ]]; then
        rpm_file=$(ls "$out"/transmitter-*.rpm)
        rpm_ok=1
elif wait "$rpm_pid"; then
        rpm_pid=
        rpm_file=$(cat "$work/rpm.files")
        ok "rpmbuild -bb (on Debian: --nodeps, packaging/rpm/debian-host.macros)"
        rpm_ok=1
else
        rpm_pid=
        cat "$work/build-rpm.err"
        fail "rpmbuild (log: $out/build-rpm.log)"
        rpm_ok=0
fi
if [[ $rpm_ok -eq 1 ]]; then
        # Files and symlinks (directories aside). /lib is /usr/lib here (merged /usr; Debian 12
        # installs units to /lib/systemd/system, Fedora to /usr/lib/systemd/system). Left out:
        # each distribution's documentation directory, lintian's overrides and rpm's
        # /usr/lib/.build-id links.
        normalise() { sed -e 's|^\./|/|' -e 's|^/lib/|/usr/lib/|' |
                grep -vE '^/usr/share/doc/|^/usr/share/licenses/|^/usr/share/lintian/|^/usr/lib/\.build-id/' | sort; }
        dpkg-deb --fsys-tarfile "$deb" | tar -t --no-recursion | grep -v '/$' | normalise >"$work/deb.paths"
        rpm -qp --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' "$rpm_file" | grep -v '^d' | cut -d' ' -f2- |
                normalise >"$work/rpm.paths"
        if diff -u "$work/deb.paths" "$work/rpm.paths" >"$work/payload.diff"; then
                ok "the .rpm and the .deb install the same $(wc -l <"$work/deb.paths") files"
        else
                cat "$work/payload.diff"
                fail "the .rpm and the .deb install different files"
        fi
        sed 's/^/  /' "$work/deb.paths"
        echo "documentation: .deb $(dpkg-deb -c "$deb" | awk '{print $6}' | grep -c '^\./usr/share/doc/.*[^/]$') files in /usr/share/doc/transmitter, .rpm: $(rpm -qlp "$rpm_file" | grep '^/usr/share/doc/' | tr '\n' ' ')"
        echo "conffile: .deb $(dpkg-deb -c "$deb" | awk '$6 == "./etc/transmitter/transmitter.conf" {print $1, $2}') (group set by postinst), .rpm $(rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}/%{FILEGROUPNAME} %{FILENAMES}\n]' "$rpm_file" | awk '$3 == "/etc/transmitter/transmitter.conf" {print $1, $2}') %config(noreplace)"
        rpm_version=$(rpm -qp --qf '%{VERSION}' "$rpm_file")
        check "the .rpm's version is meson's ($rpm_version)" test "$rpm_version" = "$version"
fi

# ---------------------------------------------------------------------------------------------
step "3. install the .deb"
snapshot() { # every path below the system directories, but the package managers' databases
        find /etc /usr /var/lib /opt /srv -xdev \( -path /var/lib/dpkg -o -path /var/lib/apt \
                -o -path /var/lib/ucf -o -path /var/cache \) -prune -o -print 2>/dev/null | LC_ALL=C sort
}
snapshot >"$work/before.paths"
# Which of the package's own paths exist already (/, /usr/bin, ...): those stay after a purge.
dpkg-deb --fsys-tarfile "$deb" | tar -t --no-recursion | sed -e 's|^\./|/|' -e 's|/$||' -e 's|^$|/|' |
        while IFS= read -r p; do [[ -e $p || -L $p ]] && printf '%s\n' "$p"; done >"$work/existed.paths"
# The accounts the sysusers.d file declares, as they are before the install.
# shellcheck disable=SC2013 # one name a word
accounts_before=$(for n in $(awk '$1 == "u" || $1 == "g" { print $2 }' "$root/units/transmitter.sysusers"); do
        getent passwd "$n"; getent group "$n"; done)
# No package may start a service here: there is no system manager (policy-rc.d(8)).
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
fi
installed=1
if apt_get install --no-install-recommends "$deb" >"$work/apt-install.log" 2>&1; then
        ok "apt-get install ./$(basename "$deb")"
        awk '/^The following NEW packages/ { p = 1; print; next } p && /^  / { print; next } { p = 0 }' \
                "$work/apt-install.log" | sed 's/^/  apt: /' 
else
        cat "$work/apt-install.log"
        fail "apt-get install ./$(basename "$deb")"
        echo "$passed passed, $failed failed"
        exit 1
fi
[[ $created_policy -eq 0 ]] || { rm -f /usr/sbin/policy-rc.d; created_policy=0; }
dpkg -L transmitter | sed 's|^/\.$|/|' | LC_ALL=C sort >"$work/package.paths"

step "the installed files"
v=$(transmitter --version 2>&1)
check "transmitter --version: '$v'" test "$v" = "transmitter $version"
pv=$(dpkg-query -W -f='${Version}' transmitter)
check "the package's upstream version is meson's ($pv)" test "${pv%-*}" = "$version"
check "the binary is /usr/bin/transmitter" test "$(command -v transmitter)" = /usr/bin/transmitter
check "/etc/transmitter/transmitter.conf is a conffile" \
        grep -q '^ /etc/transmitter/transmitter.conf ' <(dpkg-query -W -f='${Conffiles}\n' transmitter)
# The unit's static group (Group=, else User=) reads the configuration; a static User=, if
# any, must exist too. DynamicUser= services get their UID at start.
unit=/lib/systemd/system/transmitter.service
unit_user=$(sed -n 's/^User=//p' "$unit" | tail -n1)
conf_group=$(sed -n 's/^Group=//p' "$unit" | tail -n1)
conf_group=${conf_group:-$unit_user}
gr=$(getent group "$conf_group")
gid=$(cut -d: -f3 <<<"$gr")
check "the unit's group '$conf_group' exists, a system group ($gr)" test -n "$gr" -a "${gid:-1000}" -lt 1000
if [[ -n $unit_user ]]; then
        pw=$(getent passwd "$unit_user")
        check "the unit's user exists, a system user without login ($pw)" \
                test -n "$pw" -a "$(cut -d: -f3 <<<"$pw")" -lt 1000 -a "$(cut -d: -f7 <<<"$pw")" = /usr/sbin/nologin
fi
perm=$(stat -c '%U:%G %a' /etc/transmitter/transmitter.conf)
check "the conffile is root:$conf_group 0640 ($perm)" test "$perm" = "root:$conf_group 640"
# shellcheck disable=SC2016 # expanded by that sh
check "transmitter --check-config on the installed conffile" \
        sh -c 'transmitter --check-config >"$1" 2>&1' _ "$work/check-config.txt"
check "  the shipped conffile sets no obsolete setting" \
        sh -c '! grep -q "obsolete" "$1"' _ "$work/check-config.txt"
check "an unprivileged process of group $conf_group reads it (transmitter --check-config)" \
        runuser -u "${unit_user:-nobody}" -g "$conf_group" -- sh -c 'transmitter --check-config >/dev/null'
check "one outside the group cannot" sh -c '! runuser -u nobody -g nogroup -- cat /etc/transmitter/transmitter.conf 2>/dev/null'
check "transmitter.socket is enabled" test -L /etc/systemd/system/sockets.target.wants/transmitter.socket
check "transmitter.service is not" test ! -e /etc/systemd/system/multi-user.target.wants/transmitter.service
if systemd-analyze verify /lib/systemd/system/transmitter.socket /lib/systemd/system/transmitter.service \
        >"$work/verify.txt" 2>&1 && [[ ! -s $work/verify.txt ]]; then
        ok "systemd-analyze verify on the installed units (Documentation= man pages included): clean"
else
        cat "$work/verify.txt"
        fail "systemd-analyze verify on the installed units"
fi
for page in 8:transmitter 8:transmitter-dead-letters 5:transmitter.conf; do
        sec=${page%%:*} name=${page#*:}
        check "man $sec $name: /usr/share/man/man$sec/$name.$sec.gz" \
                test "$(man -w "$sec" "$name" 2>/dev/null)" = "/usr/share/man/man$sec/$name.$sec.gz"
        warn=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 "$sec" "$name" 2>&1 >/dev/null)
        check "  groff has no warning about it${warn:+: $warn}" test -z "$warn"
done

rules=/usr/share/transmitter/prometheus/transmitter.rules.yml
check "the alerting rules: promtool check rules $rules" promtool check rules "$rules"
check "the Grafana dashboard is JSON: /usr/share/transmitter/prometheus/transmitter-dashboard.json" \
        python3 -m json.tool /usr/share/transmitter/prometheus/transmitter-dashboard.json /dev/null
check "transmitter dead-letters --help" sh -c 'transmitter dead-letters --help | grep -q "^Usage: transmitter"'

step "the migrations built into the binary (those of /usr/share/transmitter/db), applied to a test database"
if wait "$devenv_pid"; then
        devenv_pid=
        ok "tests/env/devenv.sh up (broker, database, receiver)"
        # shellcheck source=/dev/null
        . "$devenv/env"
        n_sql=$(find /usr/share/transmitter/db -name '*.sql' | wc -l)
        for run in 1 2; do
                check "transmitter --migrate (run $run)" \
                        env TRANSMITTER_DATABASE_URL="$DATABASE_URL" transmitter --migrate
        done
        applied=$("$PSQL" -Atqc 'SELECT count(*) FROM transmitter.schema_migrations' 2>&1)
        check "the $n_sql migrations are recorded once each ($applied)" test "$applied" = "$n_sql"
        cols=$("$PSQL" -Atqc "SELECT string_agg(column_name, ',' ORDER BY column_name) FROM information_schema.columns
                WHERE table_schema = 'transmitter' AND table_name = 'batches'" 2>&1)
        check "transmitter.batches has its columns ($cols)" \
                grep -q 'completed_at.*created_at.*destination_url.*error_message.*http_status.*id.*instance.*item_count.*payload_size.*retry_count.*sent_at.*status' <<<"$cols"

        step "one end-to-end run under the systemd user manager"
        # The unit's own LoadCredential=auth-token:/etc/transmitter/auth-token supplies the token.
        if [[ ! -e /etc/transmitter/auth-token ]]; then
                install -m 0600 /dev/null /etc/transmitter/auth-token
                created_token=1
                printf '%s\n' "$AUTH_TOKEN" >/etc/transmitter/auth-token
        fi
        # In a mount namespace of its own: what the helper mounts for the manager goes with it.
        if unshare --mount --propagation private -- timeout 300 \
                /usr/bin/python3 "$root/packaging/tests/e2e_user_manager.py" --devenv "$devenv" \
                >"$work/e2e.log" 2>&1; then
                ok "end-to-end under systemd --user ($(tail -n1 "$work/e2e.log"))"
        else
                fail "end-to-end under systemd --user ($(tail -n1 "$work/e2e.log"))"
        fi
        sed 's/^/  e2e: /' "$work/e2e.log"
        # The token file stays: it is the administrator's, and the purge must keep it.
else
        devenv_pid=
        cat "$work/devenv-up.log"
        fail "tests/env/devenv.sh up"
fi

# ---------------------------------------------------------------------------------------------
step "4. apt-get purge, and nothing of the package is left"
if apt_get purge transmitter >"$work/apt-purge.log" 2>&1; then
        installed=0
        ok "apt-get purge transmitter"
else
        cat "$work/apt-purge.log"
        fail "apt-get purge transmitter"
fi
grep -i 'warning' "$work/apt-purge.log" | sed 's/^/  apt: /'
if [[ $created_token -eq 1 ]]; then
        check "the purge kept what the administrator added (/etc/transmitter/auth-token)" test -f /etc/transmitter/auth-token
        rm -f /etc/transmitter/auth-token
        rmdir /etc/transmitter 2>/dev/null
        created_token=0
fi
# shellcheck disable=SC2016 # a dpkg-query format
check "dpkg knows no transmitter package any more" \
        sh -c '! dpkg-query -W -f="\${db:Status-Status}" transmitter 2>/dev/null | grep -qv "^not-installed$"'
left=()
while IFS= read -r p; do
        # What the package shipped and did not exist before (not /usr/bin itself).
        grep -qxF -- "$p" "$work/existed.paths" && continue
        [[ -e $p || -L $p ]] && left+=("$p")
done <"$work/package.paths"
check "every path the package installed is gone${left[*]:+: ${left[*]}}" test ${#left[@]} -eq 0
snapshot >"$work/after.paths"
new_ours=() new_other=()
while IFS= read -r p; do
        if [[ $p == *transmitter* ]] && ! dpkg -S "$p" >/dev/null 2>&1; then new_ours+=("$p"); else new_other+=("$p"); fi
done < <(LC_ALL=C comm -13 "$work/before.paths" "$work/after.paths")
check "no new file or directory named after the package (enablement links, state, /etc/transmitter)${new_ours[*]:+: ${new_ours[*]}}" \
        test ${#new_ours[@]} -eq 0
if [[ ${#new_other[@]} -gt 0 ]]; then
        echo "new paths since the install that are not named after the package (other activity on the machine, or apt's dependencies):"
        printf '  %s\n' "${new_other[@]:0:20}"
fi
# shellcheck disable=SC2013 # one name a word
accounts_after=$(for n in $(awk '$1 == "u" || $1 == "g" { print $2 }' "$root/units/transmitter.sysusers"); do
        getent passwd "$n"; getent group "$n"; done)
if [[ $accounts_after != "$accounts_before" ]]; then
        echo "accounts the package created, which stay (Debian policy 9.2.2: not removed on purge):"
        comm -13 <(sort <<<"$accounts_before") <(sort <<<"$accounts_after") | sed 's/^/  /'
fi

step "done in $(($(date +%s) - t_start)) s"
echo "packages:"
for f in "$out"/*.deb "$out"/*.rpm; do [[ -e $f ]] && printf '  %8d  %s\n' "$(stat -c %s "$f")" "$(basename "$f")"; done
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
