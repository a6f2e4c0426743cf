# shellcheck shell=bash
# What the job runners (utils/run_local.sh, utils/run_slurm.sh) and utils/run_job.sh share: the
# "JOB=1:N LOGFILE command..." arguments, the jobs' logs and success markers, and the report of
# the jobs that failed. Sourced, not run; also defines log (utils/log.sh).
#
# A job's success marker sits next to its log: log/extract.3.log -> log/.extract.3.log.done. It
# holds "key: K", where K hashes the runner's --job-key, the log path and the command line.

_jobs_utils_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=utils/log.sh
. "$_jobs_utils_dir/log.sh"

# Parses a runner's arguments after its options: [VAR=FIRST[:LAST]] LOGFILE command [args...].
# $1 is the runner's --job-key (may be empty). Sets job_var (empty when no VAR=... is given: one
# job, nothing substituted), job_first, job_last, job_log (absolute), job_cmd (array),
# job_marker_key, and job_skip_done (true when a job key was given).
jobs_parse_args() {
  local key=$1
  shift
  job_var='' job_first=1 job_last=1
  if [[ ${1:-} =~ ^([A-Za-z_][A-Za-z0-9_]*)=([0-9]+)(:([0-9]+))?$ ]]; then
    job_var=${BASH_REMATCH[1]}
    job_first=$((10#${BASH_REMATCH[2]}))
    job_last=$((10#${BASH_REMATCH[4]:-${BASH_REMATCH[2]}}))
    shift
  fi
  if [ $# -lt 2 ]; then
    echo "$0: expected [JOB=1:N] LOGFILE command [args...], got: $*  (see $0 --help)" >&2
    exit 1
  fi
  if [ "$job_first" -gt "$job_last" ]; then
    echo "$0: empty job range $job_var=$job_first:$job_last" >&2
    exit 1
  fi
  job_log=$1
  shift
  job_cmd=("$@")
  if [ "$job_first" -lt "$job_last" ] && [[ $job_log != *"$job_var"* ]]; then
    echo "$0: $job_log: the jobs of $job_var=$job_first:$job_last need one log each" \
      "(put $job_var in the log file name)" >&2
    exit 1
  fi
  [[ $job_log == /* ]] || job_log=$PWD/$job_log
  job_marker_key=$(printf '%s\0' "$key" "$job_var" "$job_log" "${job_cmd[@]}" | sha256sum)
  job_marker_key=${job_marker_key%% *}
  job_skip_done=false
  [ -n "$key" ] && job_skip_done=true
  return 0
}

# Exits with a message unless runner option --$1 has a whole number, $2, as its value.
jobs_check_count() {
  [[ $2 =~ ^[0-9]+$ ]] && return 0
  echo "$0: --$1 expects a whole number, got '$2'" >&2
  exit 1
}

# Prints $1 with every $job_var replaced by the job index $2 (Kaldi's run.pl substitution).
job_subst() {
  echo "${1//"$job_var"/$2}"
}

# Prints the success marker of the job whose log is $1.
job_marker() {
  echo "${1%/*}/.${1##*/}.done"
}

# True when job $1 succeeded with the current key: its marker records job_marker_key.
job_succeeded() {
  grep -Fqx "key: $job_marker_key" "$(job_marker "$(job_subst "$job_log" "$1")")" 2>/dev/null
}

# Sets jobs_todo to the indices to run: every job, but with a job key only those that have not
# succeeded with it yet. Removes their old logs and markers and makes their log directories.
jobs_find_todo() {
  local i log_file
  jobs_todo=()
  for ((i = job_first; i <= job_last; i++)); do
    $job_skip_done && job_succeeded "$i" && continue
    jobs_todo+=("$i")
    log_file=$(job_subst "$job_log" "$i")
    rm -f "$log_file" "$(job_marker "$log_file")"
    mkdir -p "${log_file%/*}"
  done
  local total=$((job_last - job_first + 1))
  if [ ${#jobs_todo[@]} -eq 0 ]; then
    log_caller "all $total jobs already succeeded with the same command and --job-key"
  elif [ ${#jobs_todo[@]} -lt "$total" ]; then
    log_caller "$((total - ${#jobs_todo[@]})) of $total jobs already succeeded with the same" \
      "command and --job-key; running the other ${#jobs_todo[@]}"
  fi
  return 0
}

# Checks the jobs $@ after they ran. Returns 0 when each left its success marker; otherwise logs
# which failed (with the exit code from the log's footer) and their logs, prints the end of the
# first failed log, and returns 1.
jobs_report() {
  local i log_file code failed=() first_log=
  for i in "$@"; do
    job_succeeded "$i" && continue
    log_file=$(job_subst "$job_log" "$i")
    code=$(sed -n 's/^# Ended (code \([0-9]*\)).*/\1/p' "$log_file" 2>/dev/null | tail -n 1)
    if [ -n "$code" ]; then
      failed+=("  job $i: exit code $code, log: $log_file")
    else  # the footer is missing when the job itself was killed (or never started)
      failed+=("  job $i: killed or never started (no exit code in its log), log: $log_file")
    fi
    [ -n "$first_log" ] || first_log=$log_file
  done
  [ ${#failed[@]} -eq 0 ] && return 0
  log_caller "${#failed[@]} of $# jobs failed:"
  printf '%s\n' "${failed[@]}" >&2
  if [ -f "$first_log" ]; then
    echo "--- the end of $first_log:" >&2
    tail -n 20 "$first_log" >&2
    echo "---" >&2
  fi
  return 1
}
