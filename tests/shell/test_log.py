"""utils/log.sh: "YYYY-mm-dd HH:MM:SS (file:line:func) MSG" on stderr, naming the caller's line."""

import re

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def test_log_names_the_calling_file_line_and_function(bash):
    script = """set -euo pipefail
. "$UTILS/log.sh"
log "Stage 1:" training windows
prepare() {
  log "in a function"
}
prepare
"""
    result = bash(script)
    assert result.returncode == 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert re.fullmatch(STAMP + r" \(caller\.sh:3:main\) Stage 1: training windows", lines[0])
    assert re.fullmatch(STAMP + r" \(caller\.sh:5:prepare\) in a function", lines[1])


def test_log_caller_names_the_line_that_called_the_helper(bash):
    script = """. "$UTILS/log.sh"
helper() {
  log_caller "reported for the caller"
}
helper
"""
    result = bash(script)
    assert re.fullmatch(STAMP + r" \(caller\.sh:5:main\) reported for the caller\n", result.stderr)


def test_message_is_printed_as_is(bash):
    result = bash('. "$UTILS/log.sh"\nlog "100% done \\n %s"\n')
    assert result.stderr.rstrip("\n").endswith(r") 100% done \n %s")
