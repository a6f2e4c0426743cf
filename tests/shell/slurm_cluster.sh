#!/usr/bin/env bash
# Starts (or stops) a throw-away single-node Slurm cluster on localhost, for testing
# utils/run_slurm.sh: munged, slurmctld and slurmd run as the current user from a generated
# slurm.conf in DIR; no systemd, no files outside DIR. Needs Debian's slurm-wlm and munge packages.
#
# Usage: tests/shell/slurm_cluster.sh start DIR CTLD_PORT SLURMD_PORT
#        tests/shell/slurm_cluster.sh stop DIR
#
# After start, point the Slurm client commands at the cluster with
#   export SLURM_CONF=DIR/slurm.conf
# start exits non-zero (and stops what it started) when the node does not come up; the daemons'
# logs are DIR/*.log.
set -euo pipefail
export PATH=$PATH:/usr/sbin  # where Debian puts the daemons; a user's PATH may lack it

stop_cluster() {  # stops the daemons whose pid files are in $1 and waits until they are gone
  local dir=$1 name pid pids=()
  for name in slurmd slurmctld munged; do
    [ -f "$dir/$name.pid" ] || continue
    pids+=("$(cat "$dir/$name.pid")")
    rm -f "$dir/$name.pid"
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

write_slurm_conf() {  # $1 dir, $2 slurmctld port, $3 slurmd port
  local dir=$1 user host cpus mem_mb
  user=$(id -un)
  host=$(hostname -s)
  cpus=8  # may exceed the machine's (config_overrides allows it), so array tasks need not queue
  mem_mb=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
  cat >"$dir/slurm.conf" <<EOF
ClusterName=oskdft-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$2
SlurmdPort=$3
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
AuthInfo=socket=$dir/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
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
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start_cluster() {  # $1 dir, $2 slurmctld port, $3 slurmd port
  local dir=$1
  mkdir -p "$dir/state" "$dir/spool"
  chmod 700 "$dir"
  dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
  chmod 400 "$dir/munge.key"
  write_slurm_conf "$@"
  export SLURM_CONF=$dir/slurm.conf

  # --force: munged refuses to run as root or with a key outside /etc/munge otherwise.
  munged --force --key-file="$dir/munge.key" --socket="$dir/munge.socket" \
    --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munged.seed"
  slurmctld -i
  slurmd -N "$(hostname -s)"

  local _
  for _ in $(seq 100); do
    if sinfo -h -o %t 2>/dev/null | grep -qx idle; then return 0; fi
    sleep 0.2
  done
  echo "$0: the Slurm node did not come up; see $dir/slurmctld.log and $dir/slurmd.log" >&2
  stop_cluster "$dir"
  return 1
}

case ${1:-} in
  start) [ $# -eq 4 ] || { sed -n 6,7p "$0" >&2; exit 1; }; start_cluster "$2" "$3" "$4" ;;
  stop) [ $# -eq 2 ] || { sed -n 6,7p "$0" >&2; exit 1; }; stop_cluster "$2" ;;
  *) sed -n 6,7p "$0" >&2; exit 1 ;;
esac
