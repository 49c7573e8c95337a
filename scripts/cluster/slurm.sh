#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for tests and CI (no systemd: the daemons are started by hand).
#
# Usage: bash scripts/cluster/slurm.sh install|start|stop|status|env
#   install  apt-get install slurmctld slurmd slurm-client munge (root only; no-op when present)
#   start    write slurm.conf for this host into the state dir, start munged, slurmctld and slurmd, wait until
#            the node is idle, print the partition name (idempotent: a second start is a no-op; stale pid files
#            left by a crash are ignored)
#   stop     stop the slurmd and slurmctld this script started (munged is left running: it may be shared)
#   status   daemons, sinfo, squeue; exit 0 only when munged, slurmctld and slurmd all run and sinfo answers
#   env      print `export SLURM_CONF=...` (start also links /etc/slurm/slurm.conf to it when that file is absent or
#            is such a link, so clients find it without; MOSS_SLURM_LINK_ETC=0 turns the link off)
#
# Environment: MOSS_SLURM_DIR (state dir, default /tmp/moss-slurm), MOSS_SLURM_PARTITION (default "debug"),
# MOSS_SLURM_MEM_MB (node RealMemory, default min(16000, 90% of MemTotal)), MOSS_SLURM_START_TIMEOUT (s, default 60).
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"  # the daemons live in /usr/sbin, missing from some PATHs

STATE="${MOSS_SLURM_DIR:-/tmp/moss-slurm}"
PARTITION="${MOSS_SLURM_PARTITION:-debug}"
START_TIMEOUT="${MOSS_SLURM_START_TIMEOUT:-60}"
CONF="$STATE/slurm.conf"
NODE="$(hostname -s)"
export SLURM_CONF="$CONF"

log() { echo "slurm.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

have_binaries() { command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
    && command -v munged >/dev/null; }

# pid from a pid file, only if that process is alive and is the named program (a stale file after a crash, or a
# recycled pid, reads as "not running").
live_pid() {  # live_pid PIDFILE COMM
    local pid
    [ -f "$1" ] || return 1
    pid="$(tr -dc 0-9 < "$1")"
    [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] \
        && ! is_zombie "$pid" && echo "$pid"
}

# A killed daemon whose parent is gone stays a zombie until init reaps it (this machine's pid 1 is slow to).
is_zombie() { [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }
gone() { [ ! -d "/proc/$1" ] || is_zombie "$1"; }

# Epoch seconds of the running slurmd's registration with slurmctld (0 if unknown).
slurmd_registered_at() {
    local t
    t="$(scontrol show node "$NODE" 2>/dev/null | grep -o 'SlurmdStartTime=[^ ]*' | cut -d= -f2)"
    date -d "$t" +%s 2>/dev/null || echo 0
}

node_state() { sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n1; }

cmd_install() {
    if have_binaries; then log "Slurm and munge already installed"; return 0; fi
    [ "$(id -u)" = 0 ] || die "install needs root (apt-get install slurmctld slurmd slurm-client munge)"
    command -v apt-get >/dev/null || die "apt-get not found: install slurmctld, slurmd, slurm-client and munge by hand"
    local pkgs="slurmctld slurmd slurm-client munge" p need_update=0
    for p in $pkgs; do
        apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9]' || need_update=1
    done
    if [ "$need_update" = 1 ]; then apt-get update -q; fi
    # No service may start from the package scripts (no systemd here; we start the daemons ourselves).
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; made_policy=1
    fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pkgs || rc=$?
    if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi
    [ "$rc" = 0 ] || die "apt-get install failed (exit $rc)"
    have_binaries || die "packages installed but the binaries are not on PATH"
    log "installed: $(slurmctld -V)"
}

write_conf() {
    local cpus mem_total_mb mem_mb tmp
    cpus="$(nproc)"
    mem_total_mb="$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)"
    mem_mb="${MOSS_SLURM_MEM_MB:-$(( mem_total_mb * 9 / 10 < 16000 ? mem_total_mb * 9 / 10 : 16000 ))}"
    mkdir -p "$STATE/state" "$STATE/spool" "$STATE/log" "$STATE/run"
    tmp="$(mktemp "$STATE/slurm.conf.XXXXXX")"; chmod 0644 "$tmp"
    cat > "$tmp" <<EOF
# Written by scripts/cluster/slurm.sh: a one-node cluster for tests and CI.
ClusterName=moss
SlurmctldHost=$NODE(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
SlurmctldPort=${MOSS_SLURM_CTLD_PORT:-6817}
SlurmdPort=${MOSS_SLURM_D_PORT:-6818}
# Listen on the addresses below (127.0.0.1), not on every interface.
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
# Test-sized latency: schedule a batch job at submission (default: up to 3 s later) and re-test pending jobs
# (dependencies included) every 2 s instead of every 60 s.
SchedulerParameters=batch_sched_delay=0,sched_interval=2
# A job that asks for no memory gets 1 GiB per CPU, not the whole node (CR_Core_Memory would serialize jobs).
DefMemPerCPU=1024
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    if [ -f "$CONF" ] && cmp -s "$tmp" "$CONF"; then rm -f "$tmp"; return 1; fi
    mv "$tmp" "$CONF"
    return 0
}

# Clients (sinfo, sbatch, datatrove's executor in any shell) find the config without SLURM_CONF: link
# /etc/slurm/slurm.conf to ours, unless a real config lives there (then only SLURM_CONF works; see `env`).
link_etc_conf() {
    local etc=/etc/slurm/slurm.conf
    if [ "${MOSS_SLURM_LINK_ETC:-1}" = 0 ]; then return 0; fi
    if [ -e "$etc" ] && [ ! -L "$etc" ]; then log "leaving $etc alone (not ours): export SLURM_CONF=$CONF"; return 0; fi
    if [ -L "$etc" ] && [ "$(readlink "$etc")" = "$CONF" ]; then return 0; fi
    if [ -L "$etc" ] && ! readlink "$etc" | grep -q '/slurm.conf$'; then return 0; fi
    mkdir -p /etc/slurm && ln -sfn "$CONF" "$etc"
}

start_munge() {
    # A munged that already answers (ours from an earlier start, or the system's) is reused.
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
    getent passwd munge >/dev/null || die "no 'munge' user (is the munge package installed?)"
    mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
    if [ ! -s /etc/munge/munge.key ]; then
        if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key --force
        else dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
        log "created /etc/munge/munge.key"
    fi
    chown munge:munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
    chmod 0400 /etc/munge/munge.key
    chmod 0755 /run/munge
    # --force: a socket and lock left behind by a crashed munged do not block the start.
    runuser -u munge -- /usr/sbin/munged --force
    local i
    for i in $(seq 50); do
        if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    die "munged does not answer (see /var/log/munge/munged.log)"
}

cmd_start() {
    [ "$(id -u)" = 0 ] || die "start needs root (SlurmUser=root, munged runs as the munge user)"
    have_binaries || die "Slurm binaries not found: run 'bash scripts/cluster/slurm.sh install'"
    local ctld_pid d_pid changed=0
    ctld_pid="$(live_pid "$STATE/run/slurmctld.pid" slurmctld || true)"
    d_pid="$(live_pid "$STATE/run/slurmd.pid" slurmd || true)"
    if write_conf; then changed=1; fi
    if [ "$changed" = 1 ] && { [ -n "$ctld_pid" ] || [ -n "$d_pid" ]; }; then
        log "slurm.conf changed while the daemons run: restarting them"
        cmd_stop >/dev/null
        ctld_pid=""; d_pid=""
    fi
    start_munge
    if [ -z "$ctld_pid" ]; then
        rm -f "$STATE/run/slurmctld.pid"
        # -i: ignore state files that a crash left unreadable.
        slurmctld -f "$CONF" -i || die "slurmctld failed to start (see $STATE/log/slurmctld.log)"
    fi
    local started_d=0
    if [ -z "$d_pid" ]; then
        rm -f "$STATE/run/slurmd.pid"
        started_d="$(date +%s)"
        slurmd -f "$CONF" -N "$NODE" || die "slurmd failed to start (see $STATE/log/slurmd.log)"
    fi
    # Ready = the node is usable and, if we just started slurmd, slurmctld has seen that slurmd register (a
    # restarted slurmctld reports the node idle from its saved state before any slurmd answers).
    local deadline=$((SECONDS + START_TIMEOUT)) state="" resumed=0
    while [ $SECONDS -lt $deadline ]; do
        state="$(node_state)"
        case "$state" in
            idle|mixed|allocated|completing)
                if [ "$started_d" = 0 ] || [ "$(slurmd_registered_at)" -ge "$started_d" ]; then break; fi
                state="registering" ;;
            down*|drain*|drained*|fail*)
                # e.g. a node left down by a crash; ReturnToService=2 covers most cases, this covers the rest.
                if [ "$resumed" = 0 ]; then
                    scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true; resumed=1
                fi ;;
        esac
        sleep 0.5
    done
    case "$state" in
        idle|mixed|allocated|completing) ;;
        *) log "node state: '${state:-no answer}' after ${START_TIMEOUT}s"
           tail -n 20 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
           die "Slurm did not come up" ;;
    esac
    link_etc_conf
    log "up: node $NODE $state, SLURM_CONF=$CONF"
    echo "$PARTITION"
}

stop_one() {  # stop_one NAME
    local pid i
    pid="$(live_pid "$STATE/run/$1.pid" "$1" || true)"
    [ -n "$pid" ] || { rm -f "$STATE/run/$1.pid"; return 0; }
    kill "$pid" 2>/dev/null || true
    for i in $(seq 100); do gone "$pid" && break; sleep 0.1; done
    if ! gone "$pid"; then kill -9 "$pid" 2>/dev/null || true; sleep 0.2; fi
    rm -f "$STATE/run/$1.pid"
    log "stopped $1 ($pid)"
}

cmd_stop() {
    stop_one slurmd
    stop_one slurmctld
}

cmd_status() {
    local ctld_pid d_pid rc=0
    ctld_pid="$(live_pid "$STATE/run/slurmctld.pid" slurmctld || true)"
    d_pid="$(live_pid "$STATE/run/slurmd.pid" slurmd || true)"
    echo "state dir:  $STATE"
    echo "SLURM_CONF: $CONF"
    echo "slurmctld:  ${ctld_pid:-not running}"
    echo "slurmd:     ${d_pid:-not running}"
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then echo "munged:     answering"; else echo "munged:     not answering"; rc=1; fi
    [ -n "$d_pid" ] || rc=1
    if [ -n "$ctld_pid" ] && sinfo 2>/dev/null; then squeue 2>/dev/null || true; else rc=1; fi
    return "$rc"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
