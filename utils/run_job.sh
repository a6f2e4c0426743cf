#!/usr/bin/env bash
# Runs one job for utils/run_local.sh and utils/run_slurm.sh (not meant to be called by hand):
# appends the command's output to the job's log between Kaldi's header (command, host, start
# time) and footer (exit code, elapsed time), and when the command succeeds writes the job's
# success marker next to the log, recording KEY. Exits with the command's status.
#
# Usage: utils/run_job.sh VAR INDEX KEY LOGFILE command [args...]
#   Every VAR in LOGFILE and in the arguments becomes INDEX (an empty VAR replaces nothing).
set -uo pipefail  # no -e: a failing command is recorded in the footer, not fatal here

# shellcheck source=utils/jobs.sh
. "$(dirname "$0")/jobs.sh"

job_var=$1 index=$2 key=$3
log_file=$(job_subst "$4" "$index")
shift 4
cmd=("${@//"$job_var"/$index}")

mkdir -p "$(dirname "$log_file")"
exec >>"$log_file" 2>&1 </dev/null
printf '#'
for arg in "${cmd[@]}"; do  # quoted only where the shell would need it, as Kaldi shows them
  if [[ $arg =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then
    printf ' %s' "$arg"
  else
    printf ' %s' "${arg@Q}"
  fi
done
printf '\n# Started at %s on %s (job %s)\n#\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$HOSTNAME" "$index"
start=$SECONDS
"${cmd[@]}"
code=$?
printf '# Ended (code %d) at %s, elapsed time %d seconds\n' "$code" \
  "$(date '+%Y-%m-%d %H:%M:%S')" "$((SECONDS - start))"

if [ "$code" -eq 0 ]; then
  marker=$(job_marker "$log_file")
  echo "key: $key" >"$marker.tmp" && mv -f "$marker.tmp" "$marker" || code=1
fi
exit "$code"
