"""utils/parse_options.sh: Kaldi's semantics plus --opt=value, --, and a generated --help."""

import re

CALLER = """set -euo pipefail
# Begin configuration section.
nj=4                      # parallel jobs
use_gpu=false             # run on the GPU
cmd="utils/run_local.sh"  # job runner
train_config=             # the system's YAML
# End configuration section.
options_before=$-
. "$UTILS/parse_options.sh"
printf 'nj=%s\\nuse_gpu=%s\\ncmd=%s\\ntrain_config=%s\\n' "$nj" "$use_gpu" "$cmd" "$train_config"
printf 'arg=%s\\n' "$@"
[ "$-" = "$options_before" ] || echo "shell options changed: $options_before -> $-"
"""


def parsed(result):
    """The variables and positional arguments the caller printed."""
    assert result.returncode == 0, result.stderr
    values = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        if key == "arg":
            values.setdefault("args", []).append(value)
        else:
            values[key] = value
    return values


def test_dashes_become_underscores_and_positionals_remain(bash):
    out = parsed(bash(CALLER, "--nj", "8", "--train-config", "conf/a b.yaml", "data", "exp"))
    assert out["nj"] == "8"
    assert out["train_config"] == "conf/a b.yaml"
    assert out["use_gpu"] == "false"
    assert out["args"] == ["data", "exp"]
    assert "shell options changed" not in " ".join(out)


def test_value_with_spaces_is_kept_whole(bash):
    out = parsed(bash(CALLER, "--cmd", "utils/run_slurm.sh --gpus 1 --mem 8G"))
    assert out["cmd"] == "utils/run_slurm.sh --gpus 1 --mem 8G"


def test_equals_form(bash):
    out = parsed(bash(CALLER, "--nj=3", "--cmd=a=b c", "x"))
    assert out["nj"] == "3"
    assert out["cmd"] == "a=b c", "only the first = separates name and value"
    assert out["args"] == ["x"]


def test_parsing_stops_at_first_positional_and_at_double_dash(bash):
    out = parsed(bash(CALLER, "--nj", "2", "data", "--nj", "5"))
    assert out["nj"] == "2"
    assert out["args"] == ["data", "--nj", "5"]
    out = parsed(bash(CALLER, "--nj", "2", "--", "--nj", "5"))
    assert out["nj"] == "2"
    assert out["args"] == ["--nj", "5"]


def test_negative_number_is_a_value(bash):
    assert parsed(bash(CALLER, "--nj", "-1"))["nj"] == "-1"


def test_unknown_option_is_an_error_naming_it(bash):
    result = bash(CALLER, "--nj", "2", "--num-gpus", "1")
    assert result.returncode == 1
    assert "unknown option --num-gpus" in result.stderr
    assert result.stdout == ""


def test_a_first_pass_lets_options_defined_later_through(bash):
    # run.sh's two passes: the first knows the script's options, the second also those that a
    # file sourced between them defines.
    script = """set -euo pipefail
nj=4
args=("$@")
parse_options_unknown=skip . "$UTILS/parse_options.sh"
echo "first pass: nj=$nj skip=${parse_options_unknown-unset} train_set=${train_set-unset}"
train_set=from_file
. "$UTILS/parse_options.sh" "${args[@]}"
echo "second pass: nj=$nj train_set=$train_set args=$*"
"""
    result = bash(script, "--train-set", "cli", "--nj", "2", "data")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "first pass: nj=2 skip=unset train_set=unset",
        "second pass: nj=2 train_set=cli args=data",
    ]
    result = bash(script, "--no-such-option", "1")
    assert result.returncode == 1, "the second pass still refuses what nothing defined"
    assert "unknown option --no-such-option" in result.stderr


def test_option_without_value_is_an_error(bash):
    result = bash(CALLER, "--nj")
    assert result.returncode == 1
    assert "--nj needs a value" in result.stderr


def test_boolean_option_accepts_only_true_or_false(bash):
    assert parsed(bash(CALLER, "--use-gpu", "true"))["use_gpu"] == "true"
    result = bash(CALLER, "--use-gpu", "yes")
    assert result.returncode == 1
    assert "--use-gpu expects true or false, got 'yes'" in result.stderr


def test_empty_cmd_is_rejected(bash):
    result = bash(CALLER, "--cmd", "")
    assert result.returncode == 1
    assert "empty value for --cmd" in result.stderr


def test_config_files_are_read_first_so_the_command_line_wins(bash, tmp_path):
    (tmp_path / "a.conf").write_text("nj=7\ntrain_config=from_a.yaml\nuse_gpu=true\n")
    (tmp_path / "b.conf").write_text("train_config=from_b.yaml\n")
    # --nj comes before --config on the command line, and still wins over the file.
    out = parsed(bash(CALLER, "--nj", "9", "--config", "a.conf", "--config=b.conf", "pos"))
    assert out["nj"] == "9"
    assert out["train_config"] == "from_b.yaml", "config files are read left to right"
    assert out["use_gpu"] == "true"
    assert out["args"] == ["pos"]


def test_config_file_may_define_new_options(bash, tmp_path):
    # Kaldi semantics: an option is known when its variable is defined, by the script or a config.
    (tmp_path / "run.conf").write_text("train_set=voxceleb2\n")
    script = CALLER.replace("printf 'arg", 'echo "train_set=$train_set"\nprintf \'arg')
    out = parsed(bash(script, "--config", "run.conf", "--train-set", "mini"))
    assert out["train_set"] == "mini"


def test_missing_config_file_is_an_error(bash):
    result = bash(CALLER, "--config", "nowhere.conf")
    assert result.returncode == 1
    assert "nowhere.conf" in result.stderr


def test_bool_check_uses_the_value_a_config_file_set(bash, tmp_path):
    (tmp_path / "a.conf").write_text("train_config=true\n")
    result = bash(CALLER, "--config", "a.conf", "--train-config", "x.yaml")
    assert result.returncode == 1
    assert "expects true or false" in result.stderr


def test_leaves_no_variables_or_functions_behind(bash):
    listing = "compgen -v _po_ || true; compgen -A function _po_ || true; echo end\n"
    script = CALLER.split("printf")[0] + listing
    result = bash(script, "--nj", "2", "x")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "end\n"


def test_help_lists_the_configuration_section_under_set_u(bash):
    # CALLER defines no help_message: --help must still work under set -u.
    result = bash(CALLER, "--nj", "3", "--help", "--unknown", "x")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.search(r"^  --nj 4 +parallel jobs$", result.stdout, re.M), result.stdout
    assert re.search(r"^  --use-gpu false +run on the GPU$", result.stdout, re.M)
    assert re.search(r'^  --cmd "utils/run_local.sh" +job runner$', result.stdout, re.M)
    assert re.search(r"^  --train-config '' +the system's YAML$", result.stdout, re.M)
    assert any(line.startswith("  --config FILE") for line in lines)
    assert "nj=" not in result.stdout, "--help exits before the script goes on"
    # The comments start in one column.
    comments = ["parallel jobs", "run on the GPU", "job runner", "the system's YAML"]
    columns = {line.find(comment) for line in lines for comment in comments if comment in line}
    assert len(columns) == 1, lines


def test_help_prints_help_message_first(bash):
    script = CALLER.replace(
        "options_before=$-", 'help_message="Usage: caller.sh <dir>"\noptions_before=$-'
    )
    result = bash(script, "-h")
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: caller.sh <dir>\n")


def test_help_works_after_the_script_changed_directory(bash):
    # Like run.sh, which is started as "bash main/run.sh" and cds before parsing.
    script = CALLER.replace("options_before=$-", "cd /\noptions_before=$-")
    result = bash(script, "--help")
    assert result.returncode == 0, result.stderr
    assert "--nj 4" in result.stdout
