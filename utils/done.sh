# shellcheck shell=bash
# Done markers that make a recipe rerun only what changed. Sourced, not run: `. utils/done.sh`
# defines
#   stage_hash FILE... [-- STRING...]  prints one sha256 over the contents of the FILEs and the
#                                      STRINGs; a missing FILE is an error that names it
#   is_done DIR NAME HASH              true when DIR/.NAME.done exists, records HASH and $force is
#                                      not true; logs why it skips or reruns
#   has_done DIR NAME HASH             true when DIR/.NAME.done exists and records HASH; quiet
#   clear_done DIR NAME                removes DIR/.NAME.done
#   mark_done DIR NAME HASH            writes DIR/.NAME.done (atomically) recording HASH,
#                                      $cmdline, the date and the git revision of this checkout
# A stage in run.sh:
#   h=$(stage_hash "$conf" data/.stage0.done -- "$opts")  # fails (set -e) on a missing input
#   if ! is_done data stage1 "$h"; then
#     clear_done data stage1                              # before rewriting its outputs
#     ...                                                 # the work
#     mark_done data stage1 "$h"                          # only after it succeeded
#   fi
# A later stage lists an earlier stage's marker among its FILEs, so it reruns when that stage
# reran. A stage that rewrites its outputs in place clears its marker first: an interrupted
# rerun then leaves none, and a later stage asks for the rerun instead of reading half-rewritten
# outputs. (A stage that never overwrites its outputs, like training, keeps it.) Changes no
# shell option of the caller; also defines log (utils/log.sh).

_done_utils_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=utils/log.sh
. "$_done_utils_dir/log.sh"

stage_hash() {
  local arg sum manifest
  for arg in "$@"; do
    [ "$arg" = -- ] && break
    [ -e "$arg" ] && continue
    if [[ ${arg##*/} =~ ^\.stage([0-9]+)\.done$ ]]; then
      log_caller "missing $arg: stage ${BASH_REMATCH[1]} writes it when it succeeds;" \
        "run that stage first (--stage ${BASH_REMATCH[1]})"
    else
      log_caller "missing input $arg: create it, or run the stage that writes it first"
    fi
    return 1
  done
  manifest=$(_stage_hash_manifest "$@") || return 1
  sum=$(sha256sum <<<"$manifest") || return 1
  echo "${sum%% *}"
}

# One line per input file (its sha256) and one per string.
_stage_hash_manifest() {
  local arg sum
  while [ $# -gt 0 ] && [ "$1" != -- ]; do
    sum=$(sha256sum <"$1") || return 1
    echo "file ${sum%% *}"
    shift
  done
  [ $# -gt 0 ] && shift  # the --
  for arg in "$@"; do
    printf 'string %d %s\n' "${#arg}" "$arg"
  done
}

is_done() {
  local dir=$1 name=$2 hash=$3 marker=$1/.$2.done
  if [ -z "$hash" ]; then
    log_caller "is_done $dir $name: empty hash (did stage_hash fail?)"
    exit 1
  fi
  if [ "${force:-false}" = true ]; then
    log_caller "$name of $dir: --force true: rerunning"
    return 1
  fi
  [ -f "$marker" ] || return 1
  if has_done "$dir" "$name" "$hash"; then
    log_caller "$name of $dir done with the same config and inputs: skipping (--force true reruns)"
    return 0
  fi
  log_caller "$name of $dir: inputs changed since $(sed -n 's/^date: //p' "$marker"): rerunning"
  return 1
}

has_done() {
  [ -f "$1/.$2.done" ] && grep -Fqx "hash: $3" "$1/.$2.done"
}

clear_done() {
  rm -f "$1/.$2.done"
}

mark_done() {
  local dir=$1 name=$2 hash=$3 marker=$1/.$2.done rev tmp
  [ -n "$hash" ] || { log_caller "mark_done $dir $name: empty hash"; exit 1; }
  mkdir -p "$dir" || return 1
  # A temporary name of its own: every node of a multi-node stage 3 marks the same shared dir.
  tmp=$(mktemp "$marker.XXXXXX") || return 1
  {
    echo "hash: $hash"
    echo "cmdline: ${cmdline:-unknown}"
    echo "date: $(date '+%Y-%m-%d %H:%M:%S')"
    if rev=$(git -C "$_done_utils_dir" describe --always --dirty 2>/dev/null); then
      echo "git: $rev"
    fi
  } >"$tmp" && chmod 644 "$tmp" && mv -f "$tmp" "$marker" && return 0
  rm -f "$tmp"
  return 1
}
