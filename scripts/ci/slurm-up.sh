#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for the requeue test
# (tests/training/test_slurm_requeue.py) and for trying `make sbatch` scripts by hand, from
# Debian's slurm-wlm and munge (`make setup-system`).
#
#   scripts/ci/slurm-up.sh        start munged, slurmctld and slurmd in the background; wait
#                                 until the node is idle (about 5 s). Idempotent: a cluster that
#                                 already answers with an idle node is left as it is; one that
#                                 is busy or half up is restarted with its job state cleared.
#   scripts/ci/slurm-up.sh down   stop the daemons this script started, by their pids.
#
# Needs root: the config lives where every Slurm command looks for it (/etc/slurm/slurm.conf),
# the daemons run as root (no systemd, no cgroups: proctrack/linuxproc and task/none), and jobs
# run as the submitting user. A slurm.conf this script did not write is never overwritten.
# What the config relies on (Slurm 22.05, Debian 12):
# - the node line is `slurmd -C`'s own reading of this machine's CPUs and memory;
# - JobRequeue=1: batch jobs may be requeued; a requeued job restarts with SLURM_RESTART_COUNT=1
#   but becomes eligible only ~120 s later (reason BeginTime);
#   `scontrol update JobId=<id> StartTime=now` lifts that delay;
# - ReturnToService=2: a node that was DOWN (e.g. slurmd restarted) comes back when it registers.
# - the cluster is throwaway: slurmctld starts with -c, so jobs left in StateSaveLocation by a
#   run that was killed before `down` (a CI timeout) are dropped instead of recovered, where
#   they would hold the only node `allocated`.
set -euo pipefail

CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
MARK="# Written by tunebook scripts/ci/slurm-up.sh"
STATE=/run/tunebook-slurm          # pids of the daemons this script started
SPOOL=/var/lib/slurm
LOGS=/var/log/slurm
MUNGE_KEY=/etc/munge/munge.key
WAIT_S=60

say() { echo "slurm-up: $*"; }
die() { echo "slurm-up: error: $*" >&2; exit 2; }

need_root() {
  [ "$(id -u)" -eq 0 ] || die "needs root (it writes $CONF and starts the daemons); use sudo"
  for cmd in munged slurmctld slurmd sinfo scontrol; do
    command -v "$cmd" >/dev/null || die "$cmd not found; run \`make setup-system\` first"
  done
}

node_state() { sinfo -h -N -o '%T' 2>/dev/null | head -n 1 || true; }

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# A pid recorded at start, still running the same program: stop it and wait for it to exit.
stop_pid() {
  local name=$1 file="$STATE/$1.pid" pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if alive "$pid" && grep -qa "$name" "/proc/$pid/cmdline"; then
    kill "$pid"
    for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.2; done
    if alive "$pid"; then kill -9 "$pid"; fi
    say "stopped $name (pid $pid)"
  fi
  rm -f "$file"
}

down() {
  need_root
  stop_pid slurmd
  stop_pid slurmctld
  stop_pid munged
  rmdir "$STATE" 2>/dev/null || true
}

write_conf() {
  local host node
  host=$(hostname -s)
  # slurmd -C prints this machine's node line (CPUs, sockets, cores, RealMemory) on line 1.
  node=$(slurmd -C | head -n 1)
  [[ "$node" == NodeName=* ]] || die "\`slurmd -C\` printed no node line: $node"
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    die "$CONF exists and was not written by this script; this machine has its own Slurm"
  fi
  mkdir -p "$CONF_DIR"
  cat > "$CONF" <<EOF
$MARK; a single-node cluster on $host.
ClusterName=tunebook
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobRequeue=1
ReturnToService=2
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
StateSaveLocation=$SPOOL/slurmctld
SlurmdSpoolDir=$SPOOL/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munged already answers"
    return 0
  fi
  if [ ! -s "$MUNGE_KEY" ]; then
    mungekey --create --keyfile="$MUNGE_KEY"
  fi
  chown munge:munge "$MUNGE_KEY" && chmod 400 "$MUNGE_KEY"
  install -d -o munge -g munge -m 755 /run/munge
  runuser -u munge -- munged --pid-file=/run/munge/munged.pid
  cp /run/munge/munged.pid "$STATE/munged.pid"
  munge -n | unmunge >/dev/null || die "munged started but \`munge -n | unmunge\` fails"
  say "munged started (pid $(cat "$STATE/munged.pid"))"
}

up() {
  need_root
  if scontrol ping 2>/dev/null | grep -q "is UP" && [ "$(node_state)" = idle ]; then
    say "a Slurm cluster already answers: node idle"
    return 0
  fi
  # Busy, half up, or stale pid files from a run killed before `down`: start over, clean.
  stop_pid slurmd
  stop_pid slurmctld
  install -d -m 755 "$STATE" "$SPOOL/slurmctld" "$SPOOL/slurmd" "$LOGS"
  write_conf
  start_munge
  slurmctld -c   # daemonizes, writes SlurmctldPidFile; -c: no jobs recovered from the spool
  slurmd -c      # -c: clear locks a killed slurmd left behind
  local state=""
  for _ in $(seq 1 $((WAIT_S * 2))); do
    state=$(node_state)
    [ "$state" = idle ] && break
    sleep 0.5
  done
  if [ "$state" != idle ]; then
    echo "slurm-up: error: node state '${state:-no answer}' after ${WAIT_S} s; logs in $LOGS/" >&2
    tail -n 20 "$LOGS/slurmctld.log" "$LOGS/slurmd.log" >&2 || true
    exit 1
  fi
  say "node $(hostname -s) idle: $(grep -o 'CPUs=[0-9]*' "$CONF") $(grep -o 'RealMemory=[0-9]*' "$CONF") MB; stop with \`$0 down\`"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) die "unknown mode '$1': expected up (the default) or down" ;;
esac
