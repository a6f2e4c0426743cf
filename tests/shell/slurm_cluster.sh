#!/usr/bin/env bash
# Starts (or stops) a throw-away Slurm cluster on localhost, for testing utils/run_slurm.sh and
# utils/torchrun.sh: munged, slurmctld and one slurmd per node run as the current user from a
# generated slurm.conf in DIR; no systemd, no files outside DIR. Needs Debian's slurm-wlm and
# munge packages.
#
# Usage: tests/shell/slurm_cluster.sh start DIR CTLD_PORT SLURMD_PORT [SLURMD_PORT2]
#        tests/shell/slurm_cluster.sh stop DIR
#
# One node, named after this host (hostname -s); with SLURMD_PORT2 a second one, named
# localhost, so that a job can span two nodes. Both are this machine (127.0.0.1), under names
# it resolves: a job's first host is where torchrun's nodes meet.
# After start, point the Slurm client commands at the cluster with
#   export SLURM_CONF=DIR/slurm.conf
# start exits non-zero (and stops what it started) when a node does not come up; the daemons'
# logs are DIR/*.log.
set -euo pipefail
export PATH=$PATH:/usr/sbin  # where Debian puts the daemons; a user's PATH may lack it

stop_cluster() {  # stops the daemons whose pid files are in $1 and waits until they are gone
  local dir=$1 pid_file pid pids=()
  for pid_file in "$dir"/slurmd.*.pid "$dir/slurmctld.pid" "$dir/munged.pid"; do
    [ -f "$pid_file" ] || continue
    pids+=("$(cat "$pid_file")")
    rm -f "$pid_file"
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  kill "${pids[@]}" 2>/dev/null || true
  # Wait (they are not our children), so that a following start can reuse the ports.
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  done
}

write_slurm_conf() {  # $1 dir, $2 slurmctld port, $3 slurmd port, $4 second slurmd port or ''
  local dir=$1 user host cpus mem_mb nodes
  user=$(id -un)
  host=$(hostname -s)
  cpus=8  # may exceed the machine's (config_overrides allows it), so array tasks need not queue
  mem_mb=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
  nodes="NodeName=$host NodeHostname=$host NodeAddr=127.0.0.1 Port=$3"
  nodes+=" CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN"
  if [ -n "$4" ]; then
    nodes+=$'\n'"NodeName=localhost NodeHostname=$host NodeAddr=127.0.0.1 Port=$4"
    nodes+=" CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN"
  fi
  cat >"$dir/slurm.conf" <<EOF
ClusterName=oskdft-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$2
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
AuthInfo=socket=$dir/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.%n.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.%n.log
# No cgroups, accounting or MPI: none of them works (or is needed) inside a container.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
SchedulerType=sched/builtin
# Schedule array tasks at once, not up to 3 s later: keeps the tests fast.
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# Jobs that ask for no memory would otherwise take the whole node, one at a time.
DefMemPerCPU=100
ReturnToService=2
SlurmdParameters=config_overrides
$nodes
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start_cluster() {  # $1 dir, $2 slurmctld port, $3 slurmd port, $4 second slurmd port or ''
  local dir=$1 node nodes=("$(hostname -s)")
  [ -z "$4" ] || nodes+=(localhost)
  mkdir -p "$dir/state"
  chmod 700 "$dir"
  dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
  chmod 400 "$dir/munge.key"
  write_slurm_conf "$@"
  export SLURM_CONF=$dir/slurm.conf

  # --force: munged refuses to run as root or with a key outside /etc/munge otherwise.
  munged --force --key-file="$dir/munge.key" --socket="$dir/munge.socket" \
    --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munged.seed"
  slurmctld -i
  for node in "${nodes[@]}"; do
    mkdir -p "$dir/spool/$node"
    slurmd -N "$node"
  done

  local _
  for _ in $(seq 100); do
    # One line per node: every one of them idle.
    if [ "$(sinfo -h -N -o %t 2>/dev/null | sort -u)" = idle ]; then return 0; fi
    sleep 0.2
  done
  echo "$0: the Slurm nodes did not come up; see $dir/slurmctld.log and $dir/slurmd.*.log" >&2
  stop_cluster "$dir"
  return 1
}

case ${1:-} in
  start) [ $# -eq 4 ] || [ $# -eq 5 ] || { sed -n 7,8p "$0" >&2; exit 1; }
    start_cluster "$2" "$3" "$4" "${5:-}" ;;
  stop) [ $# -eq 2 ] || { sed -n 7,8p "$0" >&2; exit 1; }; stop_cluster "$2" ;;
  *) sed -n 7,8p "$0" >&2; exit 1 ;;
esac
