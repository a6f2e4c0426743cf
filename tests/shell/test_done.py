"""utils/done.sh: stage_hash, is_done and mark_done, as run.sh uses them."""

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# A stage as run.sh writes it: the work appends to work.txt, so the test sees whether it ran.
STAGE = """set -euo pipefail
cmdline="$0 $*"
force=${1:-false}
. "$UTILS/done.sh"
h=$(stage_hash conf.yaml data/wav.scp -- "${2:-}")
if ! is_done exp stage3 "$h"; then
  echo ran >> work.txt
  mark_done exp stage3 "$h"
fi
"""


def runs(tmp_path):
    work = tmp_path / "work.txt"
    return len(work.read_text().splitlines()) if work.exists() else 0


def test_rerun_skips_until_config_or_input_changes_and_force_reruns(bash, tmp_path):
    (tmp_path / "conf.yaml").write_text("lr: 0.1\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "wav.scp").write_text("u1 a.wav\n")

    assert bash(STAGE).returncode == 0
    assert runs(tmp_path) == 1
    result = bash(STAGE)
    assert result.returncode == 0
    assert runs(tmp_path) == 1, "nothing changed: the stage must be skipped"
    assert "stage3 of exp done with the same config and inputs: skipping" in result.stderr

    (tmp_path / "conf.yaml").write_text("lr: 0.2\n")
    result = bash(STAGE)
    assert runs(tmp_path) == 2, "a changed config reruns the stage"
    assert "inputs changed since" in result.stderr and "rerunning" in result.stderr

    (tmp_path / "data" / "wav.scp").write_text("u1 b.wav\n")
    bash(STAGE)
    assert runs(tmp_path) == 3, "a changed input reruns the stage"

    bash(STAGE, "false", "--override optim.lr=1")
    assert runs(tmp_path) == 4, "a changed string reruns the stage"
    bash(STAGE, "false", "--override optim.lr=1")
    assert runs(tmp_path) == 4

    result = bash(STAGE, "true", "--override optim.lr=1")
    assert runs(tmp_path) == 5, "--force true reruns a stage that is done"
    assert "--force true: rerunning" in result.stderr


def test_failed_stage_leaves_no_marker_and_reruns(bash, tmp_path):
    (tmp_path / "conf.yaml").write_text("a\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "wav.scp").write_text("u1 a.wav\n")
    failing = STAGE.replace("echo ran >> work.txt", "echo ran >> work.txt; false")
    assert bash(failing).returncode != 0
    assert not (tmp_path / "exp" / ".stage3.done").exists()
    assert bash(STAGE).returncode == 0
    assert runs(tmp_path) == 2


def test_interrupted_rerun_that_cleared_its_marker_leaves_none(bash, tmp_path):
    # A stage rewriting its outputs in place: until the rerun succeeds, it is not done.
    (tmp_path / "conf.yaml").write_text("a\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "wav.scp").write_text("u1 a.wav\n")
    clearing = STAGE.replace(
        "echo ran >> work.txt", "clear_done exp stage3\n  echo ran >> work.txt; [ $# -lt 3 ]"
    )
    assert bash(clearing).returncode == 0
    assert (tmp_path / "exp" / ".stage3.done").is_file()
    (tmp_path / "conf.yaml").write_text("b\n")
    assert bash(clearing, "false", "", "fail").returncode != 0
    assert not (tmp_path / "exp" / ".stage3.done").exists()
    assert runs(tmp_path) == 2


def test_marker_records_hash_command_line_date_and_git_revision(bash, tmp_path):
    (tmp_path / "conf.yaml").write_text("a\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "wav.scp").write_text("u1 a.wav\n")
    assert bash(STAGE, "false", "x").returncode == 0
    marker = (tmp_path / "exp" / ".stage3.done").read_text()
    fields = dict(line.split(": ", 1) for line in marker.splitlines())
    assert len(fields["hash"]) == 64
    assert fields["cmdline"] == "caller.sh false x"
    assert fields["date"][:2] == "20"
    git = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    if git.returncode == 0:  # a git checkout
        assert fields["git"].startswith(git.stdout.strip()[:7])
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == [".stage3.done"]


def test_nodes_marking_the_same_shared_dir_at_once_all_succeed(bash, tmp_path):
    # Each node of a multi-node stage 3 runs run.sh and marks exp/<sys> when training ends.
    script = """. "$UTILS/done.sh"
for node in 0 1 2 3; do
  ( for i in $(seq 50); do mark_done exp stage3 abc || exit 1; done ) &
done
failed=0
for job in $(jobs -p); do wait "$job" || failed=1; done
exit $failed
"""
    result = bash(script)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "exp" / ".stage3.done").read_text().startswith("hash: abc\n")
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == [".stage3.done"]


def hashes(bash, *specs):
    """stage_hash of each spec, a string of arguments as a shell would split them."""
    script = '. "$UTILS/done.sh"\nfor spec in "$@"; do eval "stage_hash $spec"; done\n'
    result = bash(script, *specs)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_stage_hash_depends_on_contents_and_strings_not_on_paths(bash, tmp_path):
    (tmp_path / "a.yaml").write_text("x\n")
    (tmp_path / "copy.yaml").write_text("x\n")
    (tmp_path / "b.yaml").write_text("y\n")
    h = hashes(
        bash,
        "a.yaml",
        "copy.yaml",
        "b.yaml",
        "a.yaml -- s1",
        "a.yaml -- s2",
        "a.yaml b.yaml",
        "b.yaml a.yaml",
        '-- "a b"',
        "-- a b",
    )
    a, copy, b, s1, s2, ab, ba, one_string, two_strings = h
    assert all(len(x) == 64 for x in h)
    assert a == copy, "the same contents under another path: the same hash"
    assert a != b
    assert len({a, s1, s2}) == 3
    assert ab != ba, "the order of the inputs counts"
    assert one_string != two_strings


def test_stage_hash_of_missing_marker_fails_under_set_e_and_names_the_stage(bash, tmp_path):
    script = """set -euo pipefail
. "$UTILS/done.sh"
h=$(stage_hash data/.stage1.done)
echo "not reached"
"""
    result = bash(script)
    assert result.returncode != 0
    assert "not reached" not in result.stdout
    assert "missing data/.stage1.done: stage 1 writes it" in result.stderr
    assert "(caller.sh:3:main)" in result.stderr


def test_stage_hash_of_missing_input_names_it(bash):
    result = bash('set -e\n. "$UTILS/done.sh"\nh=$(stage_hash conf/none.yaml)\necho no\n')
    assert result.returncode != 0
    assert "missing input conf/none.yaml" in result.stderr
    assert result.stdout == ""


def test_python_reads_the_markers_bash_writes(bash, tmp_path):
    """oskdft.utils.done (the results table's check) hashes as utils/done.sh does: multi-byte
    text, an empty string, a file without a final newline, no files at all."""
    from oskdft.utils.done import has_done, stage_hash

    (tmp_path / "a").write_text("one\ntwo\n")
    (tmp_path / "b").write_bytes(b"\x00no newline")
    cases = [(["a", "b"], ["test", "", "vox1 é"]), (["b"], []), ([], ["only strings"]), ([], [])]
    for files, strings in cases:
        script = '. "$UTILS/done.sh"; h=$(stage_hash "$@"); mark_done exp stage5 "$h"; echo "$h"'
        result = bash(script, *files, "--", *strings, env={"LC_ALL": "C"})
        assert result.returncode == 0, result.stderr
        digest = stage_hash([tmp_path / f for f in files], strings)
        assert result.stdout.strip() == digest, (files, strings)
        assert has_done(tmp_path / "exp", "stage5", digest)
        assert not has_done(tmp_path / "exp", "stage5", stage_hash([], ["other"]))


def run_sh_stage5_marking(bash, system, eval_sets):
    """Marks ``exp/<system>`` done for stage 5 with the hash line of run.sh's stage 5, as is."""
    lines = (REPO / "run.sh").read_text().splitlines()
    start = lines.index("  score_system() {")
    hash_line = next(line for line in lines[start:] if line.strip().startswith("h="))
    script = (
        f'set -euo pipefail\nroot={REPO}\nsys=$1 eval_sets=$2\n. "$UTILS/done.sh"\n'
        f'{hash_line}\nmark_done "exp/$sys" stage5 "$h"\n'
    )
    return bash(script, system, eval_sets)


def test_run_sh_marks_stage_5_by_the_rule_the_results_table_checks(bash, tmp_path):
    from oskdft.scoring.report import current_systems

    for system in ("a", "b"):
        (tmp_path / "exp" / system).mkdir(parents=True)
        (tmp_path / "exp" / system / ".stage4.done").write_text(f"hash: {system}\n")
        result = run_sh_stage5_marking(bash, system, "test vox")
        assert result.returncode == 0, result.stderr
    assert current_systems(tmp_path / "exp", ["b"], "test vox") == ["b", "a"]
    assert current_systems(tmp_path / "exp", [], "test") == [], "scored for other sets"
    (tmp_path / "exp" / "a" / ".stage4.done").write_text("hash: a, embedded again\n")
    assert current_systems(tmp_path / "exp", [], "test vox") == ["b"]

    (tmp_path / "exp" / "c").mkdir()
    result = run_sh_stage5_marking(bash, "c", "test")
    assert result.returncode != 0 and "exp/c/.stage4.done: missing" in result.stderr
    assert not (tmp_path / "exp" / "c" / ".stage5.done").exists()
