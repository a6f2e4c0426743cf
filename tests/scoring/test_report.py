"""The results tables: intervals and paired comparisons from the score files, the table over
seeds, and the errors that name a file."""

import json
import statistics

import numpy as np
import pytest

from oskdft.scoring.bootstrap import SpeakerBootstrap, interval
from oskdft.scoring.report import current_systems, make_results, make_seed_results, seed_dir
from oskdft.scoring.trials import read_scores
from oskdft.utils.done import stage_hash
from oskdft.utils.errors import InputError
from tests.scoring.fake_scores import LIST, make_trials, speaker_effect, write_system


def test_intervals_and_paired_differences_come_from_the_score_files(tmp_path):
    data, exp = tmp_path / "data", tmp_path / "exp"
    trials = make_trials(data)
    base = speaker_effect(trials)
    rng = np.random.default_rng(1)
    write_system(exp, "oskdft", trials, {"cosine": base, "plda": base + 0.3 * trials.labels})
    write_system(
        exp,
        "worse",
        trials,
        {
            "cosine": base + 2 * rng.normal(size=len(base)),
            "plda": base + 0.3 * trials.labels + 0.001 * rng.normal(size=len(base)),
        },
    )
    markdown = make_results(exp, data, ["worse", "oskdft"], ["test"], resamples=200, seed=5)
    rows = {
        (r["system"], r["backend"]): r
        for r in json.loads((exp / "results.json").read_text())["rows"]
    }

    # The same resamples, drawn here from the score files and utt2spk as written.
    speakers = {u: u.split("-")[0] for u in trials.enrol + trials.test}
    boot = SpeakerBootstrap(
        [speakers[u] for u in trials.enrol],
        [speakers[u] for u in trials.test],
        resamples=200,
        seed=5,
    )
    eers = {}
    for (system, backend), row in rows.items():
        written, scores = read_scores(exp / system / "scores" / f"{LIST}.{backend}.score")
        values = boot.metrics(scores, written.labels)
        eers[system, backend] = values["eer"]
        for metric in ("eer", "min_dcf_0.01", "min_dcf_0.001"):
            assert row[f"{metric}_ci"] == pytest.approx(list(interval(values[metric])))
    for backend in ("cosine", "plda"):
        row, ref = rows["worse", backend], rows["oskdft", backend]
        assert row["eer_diff"] == pytest.approx(row["eer"] - ref["eer"])
        assert row["eer_diff_ci"] == pytest.approx(
            list(interval(eers["worse", backend] - eers["oskdft", backend]))
        )
        assert ref["eer_diff"] is None and ref["significant"] is None
    assert rows["worse", "cosine"]["significant"] is True, "much noise added: clearly worse"
    assert rows["worse", "plda"]["significant"] is False, "a near-copy: no difference"
    assert "| worse | cosine |" in markdown
    cosine = next(line for line in markdown.splitlines() if line.startswith("| worse | cosine"))
    plda = next(line for line in markdown.splitlines() if line.startswith("|  | plda"))
    assert cosine.split(" | ")[3].endswith("] *") and plda.split(" | ")[3].endswith("]")
    assert "200 resamples" in markdown

    # Without the reference system nothing is compared.
    markdown = make_results(exp, data, ["worse"], ["test"], resamples=20)
    results = json.loads((exp / "results.json").read_text())
    assert results["bootstrap"]["reference"] is None
    assert all(r["eer_diff"] is None for r in results["rows"])


def test_systems_on_other_trials_or_unknown_speakers_are_named(tmp_path):
    data, exp = tmp_path / "data", tmp_path / "exp"
    trials = make_trials(data)
    scores = speaker_effect(trials)
    write_system(exp, "oskdft", trials, {"cosine": scores})
    shorter = type(trials)(trials.enrol[1:], trials.test[1:], trials.labels[1:])
    write_system(exp, "other", shorter, {"cosine": scores[1:]})
    with pytest.raises(
        InputError,
        match=r"other/scores/mini.cosine.score: not the trials of "
        r".*oskdft/scores/mini.cosine.score",
    ):
        make_results(exp, data, ["oskdft", "other"], ["test"], resamples=10)
    lines = (data / "test" / "utt2spk").read_text().splitlines()
    (data / "test" / "utt2spk").write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(InputError, match=r"utt2spk: 1 utterance\(s\) of .* have no speaker"):
        make_results(exp, data, ["oskdft"], ["test"], resamples=10)


def test_seed_table_means_and_spreads(tmp_path):
    data = tmp_path / "data"
    trials = make_trials(data)
    exp = tmp_path / "exp"
    eers = {}
    for seed in (1, 2, 3):
        seed_exp = seed_dir(exp, seed) / "exp"
        noise = np.random.default_rng(seed).normal(size=len(trials.labels))
        base = speaker_effect(trials) + 0.5 * noise
        eers["oskdft", seed] = write_system(seed_exp, "oskdft", trials, {"cosine": base})
        systems = ["oskdft"]
        if seed != 3:  # ft_only is missing from seed 3's table
            eers["ft_only", seed] = write_system(
                seed_exp, "ft_only", trials, {"cosine": base + 3 * noise}
            )
            systems.append("ft_only")
        make_results(seed_exp, data, systems, ["test"], resamples=30)
    markdown = make_seed_results(exp, [1, 2, 3])
    assert markdown == (exp / "results_seeds.md").read_text()
    rows = {r["system"]: r for r in json.loads((exp / "results_seeds.json").read_text())["rows"]}
    for system, seeds in (("oskdft", [1, 2, 3]), ("ft_only", [1, 2])):
        row = rows[system]
        assert row["seeds"] == seeds
        values = [eers[system, seed]["cosine"]["eer"] for seed in seeds]
        assert row["eer_per_seed"] == pytest.approx(values)
        assert row["eer"]["mean"] == pytest.approx(statistics.mean(values))
        assert row["eer"]["sd"] == pytest.approx(statistics.stdev(values))
        dcfs = [eers[system, seed]["cosine"]["min_dcf_0.01"] for seed in seeds]
        assert row["min_dcf_0.01"]["sd"] == pytest.approx(statistics.stdev(dcfs))
    assert rows["ft_only"]["compared_seeds"] == 2 and rows["oskdft"]["compared_seeds"] == 0
    diffs = [
        eers["ft_only", s]["cosine"]["eer"] - eers["oskdft", s]["cosine"]["eer"] for s in (1, 2)
    ]
    assert rows["ft_only"]["eer_diff"]["mean"] == pytest.approx(statistics.mean(diffs))
    line = next(line for line in markdown.splitlines() if line.startswith("| ft_only |"))
    mean, sd = statistics.mean(diffs), statistics.stdev(diffs)
    assert (
        f"| {100 * mean:+.2f} ± {100 * sd:.2f} | {rows['ft_only']['significant_seeds']}/2 |" in line
    )
    with pytest.raises(InputError, match=r"seed4/exp/results.json: not found"):
        make_seed_results(exp, [1, 4])


def test_the_table_holds_the_systems_scored_since_their_last_embeddings(tmp_path, caplog):
    def mark(system, scored_for="test a"):  # stages 4 and 5 as run.sh marks them
        (tmp_path / system).mkdir()
        stage4 = tmp_path / system / ".stage4.done"
        stage4.write_text("hash: embedded\n")
        scored = stage_hash([stage4], [scored_for])
        (tmp_path / system / ".stage5.done").write_text(f"cmdline: x\nhash: {scored}\n")

    for system in ("zeta", "oskdft", "alpha"):
        mark(system)
    mark("re_embedded")
    (tmp_path / "re_embedded" / ".stage4.done").write_text("hash: embedded again\n")
    mark("other_sets", scored_for="test")
    mark("no_embeddings")
    (tmp_path / "no_embeddings" / ".stage4.done").unlink()
    (tmp_path / "never_scored").mkdir()
    with caplog.at_level("INFO"):
        assert current_systems(tmp_path, ["oskdft", "never_scored", "zeta"], "test a") == [
            "oskdft",
            "zeta",
            "alpha",
        ]  # run.conf's order, then the others by name
    assert (
        "not in the results table (not scored since their last embeddings): "
        "no_embeddings other_sets re_embedded" in caplog.text
    )
    assert current_systems(tmp_path, [], "test") == ["other_sets"]
