#!/usr/bin/env bash
# The static gates, as CI (.ci/run) and the pre-commit hook (.pre-commit-config.yaml) run them:
# ruff (lint and format), shellcheck on every shell script, mypy on the package. Their settings
# are in pyproject.toml. Creates .venv first when it is missing (path.sh).
#
# Usage: bash utils/lint.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
. ./path.sh

ruff check .
ruff format --check .
# Sourced files name their shell (`# shellcheck shell=bash`); -x follows the `source=` lines.
shellcheck -x .ci/run path.sh run.sh utils/*.sh tests/shell/*.sh
# A recipe's run.conf only sets variables, for run.sh: its "unused" ones and $root are run.sh's.
shellcheck --shell=bash --exclude=SC2034,SC2154 egs/*/run.conf
mypy
