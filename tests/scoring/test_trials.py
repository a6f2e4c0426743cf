"""Trial lists and score files: parsing, bad lines, utterances without embeddings."""

import numpy as np
import pytest

from oskdft.scoring.trials import Trials, read_trials, read_utt2dur, trial_rows, write_scores
from oskdft.utils.errors import InputError


def test_bad_trial_lines_name_file_and_line(tmp_path):
    path = tmp_path / "trials_x"
    path.write_text("a b target\n1 a.wav b.wav\n")
    with pytest.raises(
        InputError, match=r"trials_x:2: bad trial '1 a.wav b.wav'.*target\|nontarget"
    ):
        read_trials(path)
    path.write_text("")
    with pytest.raises(InputError, match="no trials"):
        read_trials(path)
    with pytest.raises(InputError, match="trials_missing: trial list not found"):
        read_trials(tmp_path / "trials_missing")


def test_unknown_utterances_error_names_file_line_and_ids(tmp_path):
    path = tmp_path / "trials_O"
    lines = ["s1-a s1-b target", "s1-a s2-a nontarget"]
    lines += [f"s1-a x{i} nontarget" for i in range(7)]
    path.write_text("\n".join(lines) + "\n")
    trials = read_trials(path)
    index = {"s1-a": 0, "s1-b": 1, "s2-a": 2}
    with pytest.raises(InputError) as error:
        trial_rows(path, trials, index, "exp/sys/embeddings/test/xvector.scp")
    message = str(error.value)
    assert f"{path}:3:" in message  # the first trial with an unknown utterance
    assert "7 utterance(s) have no embedding in exp/sys/embeddings/test/xvector.scp" in message
    assert "x0, x1, x2, x3, x4, ..." in message and "x5" not in message
    enrol, test = trial_rows(
        path, Trials(trials.enrol[:2], trials.test[:2], trials.labels[:2]), index, "unused"
    )
    assert enrol.tolist() == [0, 0] and test.tolist() == [1, 2]


def test_write_scores_kaldi_form(tmp_path):
    trials = Trials(["a", "a"], ["b", "c"], np.array([True, False]))
    write_scores(tmp_path / "x.score", trials, np.array([0.5, -1.25]))
    assert (tmp_path / "x.score").read_text() == "a b 0.500000 target\na c -1.250000 nontarget\n"


def test_utt2dur(tmp_path):
    path = tmp_path / "utt2dur"
    path.write_text("a 1.5\nb 3\n")
    assert read_utt2dur(path, ["b", "a"]).tolist() == [3.0, 1.5]
    with pytest.raises(InputError, match="1 utterance\\(s\\) missing, e.g. 'c'"):
        read_utt2dur(path, ["a", "c"])
    path.write_text("a 1.5\na 2\n")
    with pytest.raises(InputError, match="utt2dur:2: duplicate key 'a'"):
        read_utt2dur(path, ["a"])
    path.write_text("a 1.5\nb 3s\n")
    with pytest.raises(InputError, match="utt2dur:2: duration of 'b' is not a number: '3s'"):
        read_utt2dur(path, ["a", "b"])
