# shellcheck shell=bash
# Sourced, not run: `. utils/log.sh` defines
#   log MSG...          prints "YYYY-mm-dd HH:MM:SS (file:line:func) MSG" to stderr, naming the
#                       line that called log (the ESPnet/icefall format; Python logs in the same
#                       shape through oskdft.utils.logging)
#   log_caller MSG...   the same, naming the line that called the function which calls
#                       log_caller: helpers such as is_done report where the recipe asked them
# Changes no shell option of the caller.

log() {
  _log_frame 2 "$@"
}

log_caller() {
  _log_frame 3 "$@"
}

# $1: how many call frames up the reported line is: FUNCNAME[i] made the call, at line
# BASH_LINENO[i-1] of BASH_SOURCE[i]. Builtins only (printf's %()T, ${x##*/}): no fork per line.
_log_frame() {
  local i=$1 file
  shift
  file=${BASH_SOURCE[i]:-$0}
  printf '%(%Y-%m-%d %H:%M:%S)T (%s:%s:%s) %s\n' -1 "${file##*/}" "${BASH_LINENO[i - 1]:-0}" \
    "${FUNCNAME[i]:-main}" "$*" >&2
}
