#!/bin/sh
# sshd.sh - a throw-away OpenSSH server (SFTP) for custodian's end-to-end
# tests, on 127.0.0.1:PORT, with its own configuration, host key, client key
# and known_hosts files in DIR. Root logs in with the client key only.
#
#   sshd.sh start DIR PORT    set up DIR (first time) and start the daemon
#   sshd.sh stop DIR          stop the daemon and drop its open sessions
#   sshd.sh start DIR         start it again (same port and keys), after stop
#
# Files in DIR: client_key (+ .pub; ed25519, OpenSSH format), known_hosts
# ("[127.0.0.1]:PORT" -> the host key), wrong_known_hosts (the same host with
# another key), sftp-root/ (the tests' remote folder), sshd.log.
# Needs (Debian): openssh-server openssh-client.
set -eu

READY_TIMEOUT=${SSHD_READY_TIMEOUT:-30}
SSHD=/usr/sbin/sshd # absolute: sshd re-executes itself

die() {
    echo "sshd.sh: $*" >&2
    exit 1
}

usage() {
    echo "usage: $0 start DIR [PORT] | stop DIR" >&2
    exit 2
}

alive() {
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null &&
        ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# PIDs of every descendant of $1 (the per-connection sshd processes and the
# sftp servers under them).
descendants() {
    grep -l "^PPid:[[:space:]]*$1\$" /proc/[0-9]*/status 2>/dev/null |
        while read -r f; do
            c=${f#/proc/}
            c=${c%/status}
            echo "$c"
            descendants "$c"
        done
}

stop_pids() {
    [ -n "$*" ] || return 0
    kill -TERM "$@" 2>/dev/null || true
    i=0
    while [ "$i" -lt 30 ]; do
        any=""
        for p in "$@"; do alive "$p" && any=1; done
        [ -z "$any" ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    kill -KILL "$@" 2>/dev/null || true
}

setup() {
    port=$1
    mkdir -p "$C/sftp-root"
    echo "$port" >"$C/port"
    ssh-keygen -q -t ed25519 -N '' -C custodian-test-host -f "$C/ssh_host_ed25519_key"
    ssh-keygen -q -t ed25519 -N '' -C custodian-test-client -f "$C/client_key"
    ssh-keygen -q -t ed25519 -N '' -C custodian-test-other -f "$C/other_host_key"
    chmod 600 "$C/ssh_host_ed25519_key" "$C/client_key" "$C/other_host_key"
    cp "$C/client_key.pub" "$C/authorized_keys"
    printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$C/ssh_host_ed25519_key.pub")" >"$C/known_hosts"
    printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$C/other_host_key.pub")" >"$C/wrong_known_hosts"
    cat >"$C/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
AddressFamily inet
HostKey $C/ssh_host_ed25519_key
PidFile $C/sshd.pid
AuthorizedKeysFile $C/authorized_keys
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
UseDNS no
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
LogLevel VERBOSE
# tests open bursts of connections
MaxStartups 200
MaxSessions 50
Subsystem sftp internal-sftp
CONF
}

start() {
    [ -e "$C/sshd_config" ] || die "$C is not set up (start DIR PORT first)"
    alive "$(cat "$C/run.pid" 2>/dev/null)" && die "already running"
    # sshd's privilege separation folder; Debian makes it only at boot.
    [ -d /run/sshd ] || mkdir -m 0755 /run/sshd 2>/dev/null || true
    "$SSHD" -t -f "$C/sshd_config" 2>>"$C/sshd.log" || die "sshd -t: bad configuration (see $C/sshd.log)"
    # -D: no fork, so $! is the daemon. Not in a new session: an interrupted
    # test run (Ctrl-C) takes it with it.
    "$SSHD" -D -f "$C/sshd_config" -E "$C/sshd.log" </dev/null >>"$C/sshd.out" 2>&1 &
    echo $! >"$C/run.pid"
    port=$(cat "$C/port")
    deadline=$(($(date +%s) + READY_TIMEOUT))
    # Ready when it hands out its host key.
    while :; do
        ssh-keyscan -T 2 -t ed25519 -p "$port" 127.0.0.1 2>/dev/null | grep -q ssh-ed25519 && break
        if ! alive "$(cat "$C/run.pid")"; then
            tail -n 20 "$C/sshd.log" "$C/sshd.out" >&2 2>/dev/null || true
            die "sshd exited"
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            tail -n 20 "$C/sshd.log" "$C/sshd.out" >&2 2>/dev/null || true
            stop
            die "sshd did not answer within ${READY_TIMEOUT}s"
        fi
        sleep 0.1
    done
}

stop() {
    pid=$(cat "$C/run.pid" 2>/dev/null || true)
    if alive "$pid"; then
        # Freeze the daemon first, then its sessions until no new one appears: a connection
        # accepted while they were being collected would otherwise outlive the "outage"
        # (a killed daemon leaves its sessions running, as sshd does on purpose).
        kill -STOP "$pid" 2>/dev/null || true
        kids=""
        while :; do
            now=$(descendants "$pid" | sort -n | tr '\n' ' ')
            [ "$now" = "$kids" ] && break
            # shellcheck disable=SC2086
            [ -n "$now" ] && kill -STOP $now 2>/dev/null || true
            kids=$now
        done
        # Stopped processes act on SIGKILL only; their connections are closed by the kernel.
        # shellcheck disable=SC2086
        kill -KILL "$pid" $kids 2>/dev/null || true
        # shellcheck disable=SC2086
        stop_pids "$pid" $kids
    fi
    rm -f "$C/run.pid" "$C/sshd.pid"
}

[ $# -ge 2 ] || usage
C=$2
case "$C" in /*) ;; *) C=$(pwd)/$C ;; esac
case "$1" in
start)
    if [ $# -ge 3 ] && [ ! -e "$C/sshd_config" ]; then
        mkdir -p "$C"
        setup "$3"
    elif [ $# -ge 3 ] && [ "$3" != "$(cat "$C/port")" ]; then
        die "$C is set up for port $(cat "$C/port"), not $3"
    fi
    start
    cat "$C/run.pid"
    ;;
stop) stop ;;
*) usage ;;
esac
