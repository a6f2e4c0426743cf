#!/usr/bin/env bash
# Create the project's virtual environment (.venv) when it is missing or out of date, and
# install oskdft into it (editable, with the test and lilcom extras).
#
# Usage: utils/setup_env.sh            # from anywhere; the repo root is found from this file
#
# Re-running is cheap: a stamp inside .venv records the hash of setup.py, and the install is
# redone only when setup.py changed or the stamp is missing (an interrupted install leaves none).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$root/.venv
stamp=$venv/.oskdft-installed
python=${PYTHON:-python3}

want=$(sha256sum "$root/setup.py" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  exit 0
fi

echo "$(date '+%Y-%m-%d %H:%M:%S') setting up $venv (a few minutes the first time: torch is large)" >&2
# A venv without pip is broken (e.g. `python3 -m venv` failed at ensurepip for want of
# python3-venv, leaving bin/python behind): make it again.
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  "$python" -m venv --clear "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -e "${root}[test,lilcom]"
echo "$want" > "$stamp"
echo "$(date '+%Y-%m-%d %H:%M:%S') environment ready: $venv" >&2
