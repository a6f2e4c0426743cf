#!/usr/bin/env bash
# The local job runner: runs the jobs of a parallel step as processes on this machine, with the
# interface of Kaldi's run.pl. utils/run_slurm.sh is the same for a Slurm cluster; run.sh's --cmd
# and --train-cmd pick one.
#
# Usage: utils/run_local.sh [options] JOB=1:N LOGFILE command [args...]
#        utils/run_local.sh [options] LOGFILE command [args...]         (one job)
#        utils/run_local.sh --gpus G --num-nodes N LOGFILE command [args...]   (run.sh stage 3:
#          this node's share of the training job; the other nodes start theirs themselves)
# e.g.   utils/run_local.sh --job-key "$h" JOB=1:4 exp/emb/log/extract.JOB.log \
#          python local/extract_embeddings.py --job JOB --num-jobs 4 data exp/emb
#
# Every JOB in LOGFILE and in the arguments becomes the job's index. The command runs as given,
# without a shell re-reading it (for a pipeline, run bash -c "a | b"). Each job's stdout and
# stderr go to its own log, between a header (command, host, start time) and a footer (exit
# code, elapsed time). At most --max-jobs-run jobs run at once, each with OMP_NUM_THREADS and
# MKL_NUM_THREADS set to max(1, cores / jobs at once) unless the caller set them.
#
# Exits 0 when every job succeeded. Otherwise lists the failed jobs and their logs, prints the end
# of the first failed log and exits 1. Each job that succeeded leaves a marker next to its log;
# with --job-key, a rerun of the same command with the same key runs only the jobs that have not
# succeeded yet, and a new key (new inputs) reruns them all. Without a key every job runs, as in
# Kaldi. Ctrl-C or SIGTERM stops the runner and every job it started (each job's process group).
# shellcheck disable=SC2034  # the Slurm options below are accepted and ignored
set -euo pipefail

# Begin configuration section.
max_jobs_run=0    # jobs running at once (0: the number of cores)
job_key=          # the step's inputs (run.sh: its stage hash): jobs done with this key are skipped
gpus=0            # ignored: utils/run_slurm.sh's request, accepted so one --cmd fits both
num_nodes=0       # ignored, as --gpus: the command runs on this node only
mem=              # ignored, as --gpus
time=             # ignored, as --gpus
partition=        # ignored, as --gpus
extra=            # ignored, as --gpus
# End configuration section.
help_message="Usage: $0 [options] JOB=1:N LOGFILE command [args...]
Runs the jobs as processes on this machine, one log each (every JOB in LOGFILE and in the
arguments becomes the job's index); exits 1 when any job failed, naming it and its log."

utils=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=utils/parse_options.sh
. "$utils/parse_options.sh"
# shellcheck source=utils/jobs.sh
. "$utils/jobs.sh"

if ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 501)); then
  log "needs bash 5.1 or newer (for wait -p); this is bash $BASH_VERSION"
  exit 1
fi
jobs_check_count max-jobs-run "$max_jobs_run"
jobs_parse_args "$job_key" "$@"
jobs_find_todo
[ ${#jobs_todo[@]} -gt 0 ] || exit 0

# The cores this process may use; nproc alone would answer OMP_NUM_THREADS, the jobs' threads.
cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
[ "$max_jobs_run" -gt 0 ] || max_jobs_run=$cores
at_once=$((max_jobs_run < ${#jobs_todo[@]} ? max_jobs_run : ${#jobs_todo[@]}))
threads=$((cores / at_once > 1 ? cores / at_once : 1))
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$threads}
export MKL_NUM_THREADS=${MKL_NUM_THREADS:-$threads}
log "running ${#jobs_todo[@]} jobs, $at_once at a time, with $OMP_NUM_THREADS threads each;" \
  "logs $job_log"

declare -A running=()  # pid -> job index

# Each job runs in its own session (setsid), so its process group holds everything it starts
# and one kill stops all of it.
stop_running_jobs() {
  local pid
  [ ${#running[@]} -gt 0 ] || return 0
  log "stopping the running jobs: ${running[*]}"
  for pid in "${!running[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  wait "${!running[@]}" 2>/dev/null || true
}
trap stop_running_jobs EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Waits for any one running job to end; jobs_report judges it by its success marker. (A trapped
# signal interrupts the wait and runs its trap.)
wait_for_one() {
  local pid
  wait -n -p pid "${!running[@]}" || true
  unset 'running[$pid]'
}

for i in "${jobs_todo[@]}"; do
  while [ ${#running[@]} -ge "$max_jobs_run" ]; do wait_for_one; done
  setsid "$utils/run_job.sh" "$job_var" "$i" "$job_marker_key" "$job_log" "${job_cmd[@]}" &
  running[$!]=$i
done
while [ ${#running[@]} -gt 0 ]; do wait_for_one; done

jobs_report "${jobs_todo[@]}"
