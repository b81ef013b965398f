#!/bin/sh
# rgw.sh - a throw-away single-node Ceph RADOS Gateway (S3) for custodian's
# end-to-end tests: one monitor, one OSD with its objects in memory
# (memstore), one radosgw serving HTTPS with a test CA. Everything lives in
# DIR; the daemons are stopped by the PIDs recorded there.
#
#   rgw.sh start DIR HTTPS_PORT MON_PORT [HTTP_PORT]
#                                   (HTTP_PORT: plain HTTP too, for debugging;
#                                   $RGW_EXTRA_CONF: lines added to the
#                                   gateway's section, e.g.
#                                   "rgw lc debug interval = 1")
#   rgw.sh stop DIR                 stop gateway, OSD and monitor
#   rgw.sh stop-gateway DIR         stop only radosgw (an S3 outage; data stays)
#   rgw.sh start-gateway DIR        start radosgw again and wait until it answers
#
# After start: DIR/ca.pem is the CA clients trust (server certificate for
# 127.0.0.1 and localhost); user access key AKTEST, secret SKTEST (a second
# user AKOTHER / SKOTHER for cross-account checks); storage classes STANDARD,
# STANDARD_IA, GLACIER and DEEP_ARCHIVE in the default placement.
# Needs (Debian): ceph-mon ceph-osd radosgw ceph-common openssl uuid-runtime curl.
set -eu

READY_TIMEOUT=${RGW_READY_TIMEOUT:-90}
CMD_TIMEOUT=60 # any single ceph/radosgw-admin command
CLASSES="STANDARD_IA GLACIER DEEP_ARCHIVE"

die() {
    echo "rgw.sh: $*" >&2
    exit 1
}

usage() {
    echo "usage: $0 start DIR HTTPS_PORT MON_PORT [HTTP_PORT] | stop DIR | stop-gateway DIR | start-gateway DIR" >&2
    exit 2
}

logs_tail() {
    for f in "$C"/log/*.log "$C"/log/*.out; do
        [ -s "$f" ] || continue
        echo "---- tail of $f" >&2
        tail -n 25 "$f" >&2
    done
}

fail() {
    echo "rgw.sh: $*" >&2
    logs_tail
    if [ "$ACTION" = start ]; then stop_all; else stop_one rgw 5; fi
    exit 1
}

# Seconds left until the start deadline (at least 1).
left() {
    l=$((DEADLINE - $(date +%s)))
    [ "$l" -ge 1 ] || l=1
    echo "$l"
}

ceph_once() {
    t=$(left)
    [ "$t" -gt "$CMD_TIMEOUT" ] && t=$CMD_TIMEOUT
    timeout -k 2 "$t" ceph -c "$C/ceph.conf" --connect-timeout "$t" "$@"
}

# ceph CMD...: one command; stdout to stdout, errors to the log. Tried up to
# 5 times: in 16.2 a client that has just connected may send its first
# command before it has the monitor map, with a zero fsid, and the monitor
# refuses it (EPERM "problem getting command descriptions from mon"), not
# running it. (The commands used here are also harmless to repeat.)
ceph_() {
    n=1
    while :; do
        if out=$(ceph_once "$@" 2>>"$C/log/mkfs.out"); then
            [ -n "$out" ] && printf '%s\n' "$out"
            return 0
        fi
        [ "$n" -ge 5 ] || [ "$(date +%s)" -ge "$DEADLINE" ] && return 1
        echo "rgw.sh: ceph $* failed, try $n; again" >>"$C/log/mkfs.out"
        n=$((n + 1))
        sleep 0.5
    done
}

admin() {
    t=$(left)
    [ "$t" -gt "$CMD_TIMEOUT" ] && t=$CMD_TIMEOUT
    timeout -k 2 "$t" radosgw-admin -c "$C/ceph.conf" "$@"
}

# A zombie (not yet reaped by whoever adopted it) counts as gone.
alive() {
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null &&
        ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

pid_of() {
    cat "$C/run/$1.pid" 2>/dev/null || true
}

# stop_one NAME GRACE: SIGTERM, SIGKILL after GRACE seconds (at once if 0),
# wait for it to go.
stop_one() {
    pid=$(pid_of "$1")
    if alive "$pid"; then
        if [ "$2" -gt 0 ]; then kill -TERM "$pid" 2>/dev/null || true; fi
        i=0
        while alive "$pid" && [ "$i" -lt $(($2 * 10)) ]; do
            sleep 0.1
            i=$((i + 1))
        done
        if alive "$pid"; then
            kill -KILL "$pid" 2>/dev/null || true
            i=0
            while alive "$pid" && [ "$i" -lt 50 ]; do
                sleep 0.1
                i=$((i + 1))
            done
        fi
    fi
    rm -f "$C/run/$1.pid"
}

# The gateway first (clients see a clean close); the cluster's state is
# throw-away, so OSD and monitor are killed without their ~2 s shutdown each
# (memstore would also save every object to DIR on SIGTERM).
stop_all() {
    stop_one rgw 5
    stop_one osd 0
    stop_one mon 0
}

# start_daemon NAME CMD...: run a Ceph daemon in the foreground of a background
# job (logging to its own file) and record its PID. Not in a new session:
# an interrupted test run (Ctrl-C) takes the daemons with it.
start_daemon() {
    name=$1
    shift
    "$@" </dev/null >>"$C/log/$name.out" 2>&1 &
    echo $! >"$C/run/$name.pid"
}

https_code() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 3 --cacert "$C/ca.pem" \
        "https://127.0.0.1:$(cat "$C/https_port")/" 2>/dev/null || true
}

start_gateway() {
    alive "$(pid_of rgw)" && die "gateway already running (pid $(pid_of rgw))"
    start_daemon rgw radosgw -f -c "$C/ceph.conf" -n client.rgw.a
    while [ "$(https_code)" != 200 ]; do
        alive "$(pid_of rgw)" || fail "radosgw exited"
        [ "$(date +%s)" -lt "$DEADLINE" ] || fail "radosgw did not answer within ${READY_TIMEOUT}s"
        sleep 0.2
    done
}

make_certs() {
    (
        cd "$C"
        openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=custodian-test-ca \
            -keyout ca.key -out ca.pem
        openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout rgw.key -out rgw.csr
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:*.localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >san.ext
        openssl x509 -req -in rgw.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 7 \
            -extfile san.ext -out rgw.pem
        chmod 600 ca.key rgw.key
    ) >"$C/log/openssl.out" 2>&1 || fail "making the test certificates failed"
}

write_conf() {
    fsid=$(uuidgen)
    http=""
    [ -n "$HTTP_PORT" ] && http="endpoint=127.0.0.1:$HTTP_PORT "
    cat >"$C/ceph.conf" <<CONF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$MON_PORT
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
# daemons ask for 'secure' by default, which auth none cannot give
ms mon client mode = crc secure
keyring = $C/keyring
run dir = $C/run
pid file = $C/run/\$name.ceph.pid
admin socket = $C/run/\$name.asok
log file = $C/log/\$name.log
crash dir = $C/crash
log to stderr = false
err to stderr = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
# a monitor refuses to run on a disk under 5% free; this one holds little
mon data avail crit = 0
osd objectstore = memstore
memstore device bytes = 4294967296
ms bind ipv4 = true
ms bind ipv6 = false
ms bind msgr2 = false
# all configuration is in this file: no round trip to fetch more
no mon config = true
[mon.a]
# commit changes (pools, users' first writes) at once, not once a second
paxos propose interval = 0.05
mon data = $C/mon
mon addr = v1:127.0.0.1:$MON_PORT
[osd.0]
osd data = $C/osd0
osd crush update on start = false
# Its first command to the monitor may leave before the monitor map has come
# (16.2 race: sent with a zero fsid, refused as "wrong fsid", and the OSD
# then never boots); this one is not needed.
osd class update on start = false
[client.rgw.a]
rgw frontends = beast ${http}ssl_endpoint=127.0.0.1:$HTTPS_PORT ssl_certificate=$C/rgw.pem ssl_private_key=$C/rgw.key
rgw data = $C/rgw
rgw thread pool size = 64
rgw dns name = localhost
${RGW_EXTRA_CONF:-}
CONF
}

class_pool() {
    echo "default.rgw.$(echo "$1" | tr 'A-Z_' 'a-z-').data"
}

start_all() {
    [ -e "$C/ceph.conf" ] && die "$C already holds a cluster; use a fresh folder"
    mkdir -p "$C/mon" "$C/osd0" "$C/run" "$C/log" "$C/rgw" "$C/crash"
    echo "$HTTPS_PORT" >"$C/https_port"
    make_certs
    write_conf

    monmaptool --create --addv a "[v1:127.0.0.1:$MON_PORT]" --fsid "$(sed -n 's/^fsid = //p' "$C/ceph.conf")" \
        "$C/monmap" >"$C/log/mkfs.out" 2>&1 || fail "monmaptool failed"
    ceph-mon -c "$C/ceph.conf" --mkfs -i a --monmap "$C/monmap" >>"$C/log/mkfs.out" 2>&1 ||
        fail "ceph-mon --mkfs failed"
    start_daemon mon ceph-mon -f -c "$C/ceph.conf" -i a

    # The first command waits for the monitor to answer. osd.0 gets a known
    # uuid, so that the OSD made next matches it.
    osd_uuid=$(uuidgen)
    id=$(ceph_ osd create "$osd_uuid") || fail "ceph osd create failed"
    [ "$id" = 0 ] || fail "ceph osd create gave '$id', expected 0"
    ceph-osd -c "$C/ceph.conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >>"$C/log/mkfs.out" 2>&1 || fail "ceph-osd --mkfs failed"
    ceph_ osd crush add osd.0 1.0 host=localhost root=default >>"$C/log/mkfs.out" ||
        fail "ceph osd crush add failed"
    start_daemon osd ceph-osd -f -c "$C/ceph.conf" -i 0

    # Make the pools the gateway would make on first use (each costs seconds
    # of peering then); their placement groups come up in the background.
    # One ceph process reads all the commands (each start of the tool costs
    # half a second); all are harmless to repeat.
    pools=".rgw.root default.rgw.control default.rgw.meta default.rgw.log
        default.rgw.buckets.index default.rgw.buckets.non-ec default.rgw.buckets.data"
    for sc in $CLASSES; do pools="$pools $(class_pool "$sc")"; done
    n=1
    while :; do
        for pool in $pools; do
            echo "osd pool create $pool 8"
            echo "osd pool application enable $pool rgw"
        done | ceph_once >>"$C/log/mkfs.out" 2>&1 || true
        detail=$(ceph_ osd pool ls detail) || fail "ceph osd pool ls failed"
        missing=""
        for pool in $pools; do
            echo "$detail" | grep -q "'$pool' .*application rgw" || missing="$missing $pool"
        done
        [ -z "$missing" ] && break
        [ "$n" -ge 5 ] && fail "pools not made:$missing"
        n=$((n + 1))
        sleep 0.5
    done

    # Creating a user makes the default realm-less zone and its pools, so the
    # extra storage classes can be added before the gateway's first start.
    admin user create --uid=test --display-name=test --access-key=AKTEST --secret-key=SKTEST \
        >>"$C/log/admin.out" 2>&1 || fail "radosgw-admin user create failed"
    admin user create --uid=other --display-name=other --access-key=AKOTHER --secret-key=SKOTHER \
        >>"$C/log/admin.out" 2>&1 || fail "radosgw-admin user create (other) failed"
    for sc in $CLASSES; do
        pool=$(class_pool "$sc")
        admin zonegroup placement add --rgw-zonegroup default --placement-id default-placement \
            --storage-class "$sc" >>"$C/log/admin.out" 2>&1 || fail "zonegroup placement add $sc failed"
        admin zone placement add --rgw-zone default --placement-id default-placement \
            --storage-class "$sc" --data-pool "$pool" >>"$C/log/admin.out" 2>&1 ||
            fail "zone placement add $sc failed"
    done
    start_gateway
}

[ $# -ge 2 ] || usage
ACTION=$1
C=$2
case "$C" in /*) ;; *) C=$(pwd)/$C ;; esac
DEADLINE=$(($(date +%s) + READY_TIMEOUT))

case "$ACTION" in
start)
    [ $# -ge 4 ] || usage
    HTTPS_PORT=$3
    MON_PORT=$4
    HTTP_PORT=${5:-}
    start_all
    echo "mon $(pid_of mon) osd $(pid_of osd) rgw $(pid_of rgw)"
    ;;
stop)
    stop_all
    ;;
stop-gateway)
    stop_one rgw 5
    ;;
start-gateway)
    [ -e "$C/ceph.conf" ] || die "no cluster in $C"
    alive "$(pid_of osd)" || die "OSD not running; the gateway needs the cluster"
    start_gateway
    echo "rgw $(pid_of rgw)"
    ;;
*) usage ;;
esac
