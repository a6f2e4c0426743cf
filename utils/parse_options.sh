# shellcheck shell=bash
# Sets a script's shell variables from its command-line options, as Kaldi's
# utils/parse_options.sh does. Sourced, not run, after the script's defaults:
#
#   cmdline="$0 $*"           # saved before parsing, for done markers and logs
#   # Begin configuration section.
#   nj=4                      # parallel jobs
#   use_gpu=false             # run on the GPU
#   # End configuration section.
#   help_message="Usage: $0 [options] <data-dir>"    # optional, printed first by --help
#   . utils/parse_options.sh  # consumes the options; the positional arguments remain in "$@"
#
# Kaldi's semantics:
#   --opt-name VALUE  sets opt_name (dashes become underscores); an option whose variable is not
#                     defined is an error, and so is a value other than true/false when the
#                     current value is true or false
#   --config FILE     (any number, left to right) sourced before any other option is applied,
#                     so the command line wins over the file
#   parsing stops at the first argument that does not start with --; an empty --cmd is an error
# Extensions (not in Kaldi):
#   --opt-name=VALUE  the same as --opt-name VALUE
#   --                ends the options
#   --help, -h        prints ${help_message:-} and the options of the script's configuration
#                     section (name, default, comment) to stdout, then exits 0
#   parse_options_unknown=skip . utils/parse_options.sh
#                     lets options whose variable is not defined yet through, unapplied: a first
#                     pass before a file that defines more options is sourced (run.sh's run.conf)
# Any error exits the calling script with status 1 and a message naming the option. Leaves no
# variables or functions behind and changes no shell option of the caller (works under set -u).

# Walks the options in "$@" (the caller's arguments): collects --config files into _po_configs,
# the other options into _po_names/_po_values, and how many arguments they took into _po_used.
# Handles --help here, so that it works whatever the other options are.
_po_split() {
  local arg name value
  _po_configs=() _po_names=() _po_values=() _po_used=0
  while [ $# -gt 0 ]; do
    arg=$1
    case $arg in
      --help | -h) _po_help; exit 0 ;;
      --) _po_used=$((_po_used + 1)); return 0 ;;
      --*=*) name=${arg%%=*} value=${arg#*=}; shift ;;  # --opt=value: not in Kaldi
      --*)
        name=$arg
        [ $# -ge 2 ] || { echo "$0: option $arg needs a value" >&2; exit 1; }
        value=$2
        _po_used=$((_po_used + 1))
        shift 2 ;;
      *) return 0 ;;
    esac
    _po_used=$((_po_used + 1))
    name=${name#--}
    name=${name//-/_}
    if ! [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
      echo "$0: invalid option ${arg%%=*}" >&2
      exit 1
    fi
    if [ "$name" = config ]; then
      _po_configs+=("$value")
    else
      _po_names+=("$name") _po_values+=("$value")
    fi
  done
}

# Sets each collected option's variable, checking that it exists and that booleans stay boolean.
# The locals are prefixed so that they cannot hide the caller's variable of the same name.
_po_apply() {
  local _po_i _po_name _po_value _po_old
  for _po_i in "${!_po_names[@]}"; do
    _po_name=${_po_names[_po_i]} _po_value=${_po_values[_po_i]}
    if ! declare -p "$_po_name" >/dev/null 2>&1; then
      [ "${parse_options_unknown:-}" = skip ] && continue
      echo "$0: unknown option --${_po_name//_/-} (see $0 --help)" >&2
      exit 1
    fi
    _po_old=${!_po_name-}  # "-": an empty array is defined but has no value
    if [[ ($_po_old == true || $_po_old == false) && $_po_value != true && $_po_value != false ]]
    then
      echo "$0: option --${_po_name//_/-} expects true or false, got '$_po_value'" >&2
      exit 1
    fi
    printf -v "$_po_name" '%s' "$_po_value"
  done
}

# Prints $help_message and the configuration section of the calling script, one option a line:
# "--name default   comment", the default shown as written in the script. Other lines of the
# section (comments, blank lines) are printed as they are.
_po_help() {
  local script=$_po_script line rest value comment i width=0 in_section=false
  local options=() comments=()
  # Scripts like run.sh cd before parsing: a relative path then names the directory they left.
  [[ -r $script || $script == /* ]] || script=${OLDPWD:-.}/$script
  while IFS= read -r line; do
    case $line in
      "# Begin configuration section."*) in_section=true; continue ;;
      "# End configuration section."*) break ;;
    esac
    $in_section || continue
    if [[ $line =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]]; then
      rest=${BASH_REMATCH[2]}
      value=${rest%%[[:space:]]#*}
      value=${value%"${value##*[![:space:]]}"}  # trailing blanks
      [ -n "$value" ] || value="''"
      comment=
      [[ $rest == *[[:space:]]#* ]] && comment=${rest#*[[:space:]]#} && comment=${comment# }
      options+=("--${BASH_REMATCH[1]//_/-} $value") comments+=("$comment")
    else
      options+=("") comments+=("$line")
    fi
  done <"$script"
  options+=("--config FILE" "--help")
  comments+=("bash file of option values, read first (the command line wins)" "print this message")
  for i in "${!options[@]}"; do
    [ ${#options[i]} -gt "$width" ] && width=${#options[i]}
  done

  [ -n "${help_message:-}" ] && printf '%b\n\n' "$help_message"
  echo "Options (--name default; --name=value works too):"
  for i in "${!options[@]}"; do
    if [ -n "${options[i]}" ]; then
      printf '  %-*s  %s\n' "$width" "${options[i]}" "${comments[i]}"
    else
      printf '%s\n' "${comments[i]}"
    fi
  done
}

_po_script=${BASH_SOURCE[1]:-$0}
_po_split "$@"
# Sourced here, outside any function, so that the files' assignments are global as in Kaldi.
for _po_config in "${_po_configs[@]}"; do
  if [ ! -r "$_po_config" ]; then
    echo "$0: cannot read config file '$_po_config' (given with --config)" >&2
    exit 1
  fi
  # shellcheck disable=SC1090
  . "$_po_config"
done
_po_apply
shift "$_po_used"
unset -v _po_script _po_config _po_configs _po_names _po_values _po_used
unset -f _po_split _po_apply _po_help

# An empty --cmd is almost always a scripting error (an unset variable); Kaldi rejects it too.
if [ -n "${cmd+x}" ] && [ -z "$cmd" ]; then
  echo "$0: empty value for --cmd" >&2
  exit 1
fi
true
