#!/bin/sh
# install-deps.sh - install the Debian packages custodian's build, tests and
# benchmark need, only those missing. Idempotent; run as root on bookworm.
#   install-deps.sh build   what `make` needs
#   install-deps.sh deb     plus what `make deb` needs
#   install-deps.sh test    plus what `make test` needs
#   install-deps.sh bench   plus what `make bench` compares against
set -eu

build="gcc make pkg-config libev-dev libcurl4-openssl-dev libsodium-dev libzstd-dev
libsqlite3-dev libssl-dev libssh2-1-dev libinih-dev libarchive-dev libmongoc-dev libsystemd-dev tzdata"
deb="$build dpkg-dev debhelper lintian"
# The package tests: dpkg, the user (adduser), ACLs, the unit (systemd-analyze),
# the man pages (groff, man-db) and the completion.
test="$deb adduser acl systemd groff-base man-db bash-completion libcmocka-dev python3 python3-pytest valgrind sqlite3 clang-format clang libclang-rt-14-dev
ceph-mon ceph-osd radosgw ceph-common openssh-server openssh-client openssl uuid-runtime curl
python3-mockupdb python3-mongomock python3-bson python3-pymongo python3-cryptography time
python3-nacl python3-zstandard
python3-prometheus-client python3-html5lib faketime"
bench="$test rclone restic borgbackup"

case "${1:-build}" in
build) want=$build ;;
deb) want=$deb ;;
test) want=$test ;;
bench) want=$bench ;;
*) echo "usage: $0 build|deb|test|bench" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "custodian needs these Debian packages:$missing" >&2
    echo "run: sudo $0 ${1:-build}" >&2
    exit 1
fi
echo "installing Debian packages:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || { echo "apt-get update failed" >&2; exit 1; }
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
