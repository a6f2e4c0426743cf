#!/usr/bin/env bash
# Run the test suite: unit tests, doctests of the package, shell tests and the end-to-end mini
# recipe. Creates .venv first when it is missing.
#
# Usage: bash utils/run_tests.sh [pytest args...]     e.g. bash utils/run_tests.sh -k scoring
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
. ./path.sh
exec python -m pytest "$@"
