#!/usr/bin/env bash
# The Slurm job runner: the interface of utils/run_local.sh (Kaldi's run.pl), with the jobs run
# as one Slurm job array. run.sh uses it with --cmd, e.g.
#   bash run.sh --cmd "utils/run_slurm.sh --partition gpu --gpus 1 --mem 16G --time 4:00:00"
#
# Usage: utils/run_slurm.sh [options] JOB=1:N LOGFILE command [args...]
#        utils/run_slurm.sh [options] --num-nodes N LOGFILE command [args...]
#
# JOB=1:N becomes one `sbatch --array` of the indices still to run. The jobs write the same logs
# (header, output, footer) and success markers, at the same paths, as with utils/run_local.sh;
# Slurm's own messages about a job (time limit, out of memory) land in its log too. The logs,
# the working directory and the command's files must be on a file system the compute nodes
# share; nothing else is assumed to be (the sbatch script is written under the log directory,
# in slurm/). The runner polls squeue until the array has left the queue, then reports the jobs
# that failed as utils/run_local.sh does and exits 1 if any did; a rerun with the same --job-key
# submits only the jobs that have not succeeded yet. Ctrl-C or SIGTERM cancels the array.
# The jobs see the caller's environment (sbatch --export=ALL), with OMP_NUM_THREADS and
# MKL_NUM_THREADS set to --cpus unless the caller set them.
#
# With --num-nodes N, the command is one job instead (no JOB=1:N) on N nodes: srun starts it
# once on each node (--ntasks-per-node=1), with --gpus, --cpus and --mem per node. Its log is
# the one LOGFILE, each line prefixed by the node's task number when N > 1, and the job fails
# when the command fails on any node (srun then stops it on the others). run.sh's stage 3 runs
# utils/torchrun.sh this way.
set -euo pipefail

# Begin configuration section.
gpus=0             # GPUs per job (sbatch --gres=gpu:N)
cpus=1             # CPU cores per job (sbatch --cpus-per-task)
mem=               # memory per job, e.g. 8G (sbatch --mem; empty: the cluster's default)
time=              # time limit per job, e.g. 4:00:00 (sbatch --time; empty: the partition's)
partition=         # partition (empty: the cluster's default)
max_jobs_run=0     # jobs of the array running at once (sbatch --array=...%M; 0: no limit)
extra=             # more sbatch options, e.g. "--qos=high --account=speech"
job_key=           # the step's inputs (run.sh: its stage hash): jobs done with this key are skipped
poll_interval=10   # seconds between two looks at the queue
num_nodes=0        # > 0: one job on this many nodes, the command run on each by srun (no JOB=1:N)
# End configuration section.
help_message="Usage: $0 [options] JOB=1:N LOGFILE command [args...]
       $0 [options] --num-nodes N LOGFILE command [args...]
Runs the jobs as one Slurm job array, one log each (every JOB in LOGFILE and in the arguments
becomes the job's index), or with --num-nodes one job on N nodes, its command started on each
by srun; exits 1 when any job failed, naming it and its log."

utils=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=utils/parse_options.sh
. "$utils/parse_options.sh"
# shellcheck source=utils/jobs.sh
. "$utils/jobs.sh"

jobs_check_count gpus "$gpus"
jobs_check_count cpus "$cpus"
jobs_check_count max-jobs-run "$max_jobs_run"
jobs_check_count num-nodes "$num_nodes"
jobs_parse_args "$job_key" "$@"
if [ "$num_nodes" -gt 0 ] && [ "$job_first" -ne "$job_last" ]; then
  echo "$0: --num-nodes runs one job (on $num_nodes nodes), not $job_var=$job_first:$job_last" >&2
  exit 1
fi
if ! command -v sbatch >/dev/null; then
  log "sbatch not found: this is not a Slurm submit host (--cmd utils/run_local.sh runs locally)"
  exit 1
fi
jobs_find_todo
[ ${#jobs_todo[@]} -gt 0 ] || exit 0

# The sbatch script: one line that runs the array task's job (with --num-nodes: the one job,
# under srun) through utils/run_job.sh. It goes next to the logs, in a directory whose path
# holds no JOB.
script_dir=${job_log%/*}
while [ -n "$job_var" ] && [[ $script_dir == *"$job_var"* ]]; do script_dir=${script_dir%/*}; done
script_dir=$script_dir/slurm
name=${job_log##*/}
name=${name%.log}
mkdir -p "$script_dir"

# Slurm writes the job's stdout (and its own messages) to the job's log, in which a literal % is
# written %%; run_job.sh appends to the same file.
output=${job_log//%/%%}
sbatch_args=(--parsable --job-name="$name" --open-mode=append --export=ALL --chdir="$PWD"
  --cpus-per-task="$cpus")
if [ "$num_nodes" -gt 0 ]; then
  # srun starts the command on every node; when it fails on one, srun stops the others (a
  # distributed run would otherwise wait for the missing node until it times out).
  what="job on $num_nodes node(s)"
  index=$job_first
  launch=(srun --nodes="$num_nodes" --ntasks-per-node=1 --cpus-per-task="$cpus"
    --kill-on-bad-exit=1)
  [ "$num_nodes" -gt 1 ] && launch+=(--label)
  output=$(job_subst "$output" "$job_first")
  sbatch_args+=(--nodes="$num_nodes" --ntasks-per-node=1)
  submitted="on $num_nodes node(s), log $(job_subst "$job_log" "$job_first")"
else
  # Task i of the array runs job i; %a in the log's name is the task's index.
  what="job array"
  # shellcheck disable=SC2016  # $SLURM_ARRAY_TASK_ID is for the task to expand
  index='"$SLURM_ARRAY_TASK_ID"'
  launch=()
  [ -z "$job_var" ] || output=${output//"$job_var"/%a}
  indices=$(IFS=,; echo "${jobs_todo[*]}")
  array=$indices
  [ "$max_jobs_run" -gt 0 ] && array+=%$max_jobs_run
  sbatch_args+=(--array="$array")
  submitted="jobs $indices of $job_var=$job_first:$job_last, logs $job_log"
fi
sbatch_args+=(--output="$output")
[ "$gpus" -gt 0 ] && sbatch_args+=(--gres="gpu:$gpus")
[ -n "$mem" ] && sbatch_args+=(--mem="$mem")
[ -n "$time" ] && sbatch_args+=(--time="$time")
[ -n "$partition" ] && sbatch_args+=(--partition="$partition")
read -r -a extra_args <<<"$extra"
sbatch_args+=("${extra_args[@]}")

{
  echo "#!/usr/bin/env bash"
  echo "# Written by $0: the Slurm $what of $job_log."
  printf 'exec %q %q %s %q %q' "$utils/run_job.sh" "$job_var" "$index" "$job_marker_key" \
    "$job_log"
  printf ' %q' "${launch[@]}" "${job_cmd[@]}"
  echo
} >"$script_dir/$name.sh.tmp"
mv -f "$script_dir/$name.sh.tmp" "$script_dir/$name.sh"

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$cpus}
export MKL_NUM_THREADS=${MKL_NUM_THREADS:-$cpus}

if ! job_id=$(sbatch "${sbatch_args[@]}" "$script_dir/$name.sh"); then
  log "sbatch refused the $what (its message is above): sbatch ${sbatch_args[*]}"
  exit 1
fi
job_id=${job_id%%;*}  # --parsable prints "id" or "id;cluster"
log "Slurm job $job_id: $submitted"

cancel_job() {
  log "cancelling Slurm job $job_id"
  scancel "$job_id" || true
}
trap cancel_job EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Until the array has left the queue. A job that slurmctld already forgot is an "Invalid job id".
while true; do
  if queued=$(squeue --noheader --jobs="$job_id" --format=%i 2>&1); then
    [ -n "$queued" ] || break
  elif [[ $queued == *"Invalid job id"* ]]; then
    break
  else
    log "squeue failed, trying again: $queued"
  fi
  # In the background so that a signal is handled at once, not after the sleep.
  sleep "$poll_interval" &
  wait $!
done
trap - EXIT

# Files written on the compute nodes can take a few seconds to show here (NFS attribute caches):
# look once more after a pause before calling a job failed.
for i in "${jobs_todo[@]}"; do
  job_succeeded "$i" || { sleep "$poll_interval"; break; }
done
jobs_report "${jobs_todo[@]}"
