# shellcheck shell=bash
# Sourced by run.sh (and usable in an interactive shell): the environment every stage runs in.
# Creates .venv on first use and activates it. Thread pools are sized by the job runner
# (utils/run_local.sh), which divides the cores among the jobs it runs side by side.
OSKDFT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$OSKDFT_ROOT/utils/setup_env.sh"
# shellcheck disable=SC1091
. "$OSKDFT_ROOT/.venv/bin/activate"
export PYTHONPATH=$OSKDFT_ROOT${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
export LC_ALL=C
# The hub client sends no usage reports.
export HF_HUB_DISABLE_TELEMETRY=1
