"""Stage 5 for one system: every back end on every trial list, calibration, metrics and plots.

Inputs (paths relative to the recipe's working directory)::

    exp/<sys>/config.yaml                    its ``eval`` section: back ends and their settings
    exp/<sys>/embeddings/<set>/xvector.scp   and xvector_crops.scp (for ``fused``), for each
                                             evaluation set, the validation set and the back-end set
    data/<set>/trials_<name>                 the trial lists of each evaluation set
    data/<valid>/trials_valid                validation trials (held-out training speakers)
    data/<backend>/utt2spk                   speakers of the back-end set
    data/<set>/utt2dur                       only with ``eval.calibration_durations``

Outputs, in ``exp/<sys>/scores/``, which is replaced as a whole only when everything succeeded::

    <name>.<backend>.score    <utt1> <utt2> <score> target|nontarget
    <name>.det.png, <name>.hist.png
    metrics.json              EER, minDCF@0.01/0.001, Cllr, min Cllr per trial list and back end
    calibration.json          per back end, fitted on the validation trials (see calibration.py)
    <backend>.npz             fitted back-end parameters (mean, LDA + PLDA, AS-norm cohort)
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from oskdft.config import EvalConfig, load_config
from oskdft.layout import (
    CALIBRATION_NAME,
    CONFIG_NAME,
    EMBEDDINGS_DIR,
    METRICS_NAME,
    SCORES_DIR,
)
from oskdft.scoring.backends import Backend, build_backend, save_backend
from oskdft.scoring.calibration import (
    Calibration,
    fit_calibration,
    quality_features,
    save_calibrations,
)
from oskdft.scoring.embeddings import Embeddings, load_embeddings
from oskdft.scoring.metrics import evaluate
from oskdft.scoring.plots import plot_det, plot_histograms
from oskdft.scoring.trials import (
    Trials,
    read_table,
    read_trials,
    read_utt2dur,
    trial_rows,
    write_scores,
)
from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike, atomic_dir, atomic_write

log = logging.getLogger(__name__)

TRIALS_PREFIX = "trials_"


@dataclass
class TrialList:
    """A trial list resolved against its set's embeddings."""

    name: str
    path: Path
    trials: Trials
    enrol: np.ndarray  # rows of the enrolment utterances in the embeddings
    test: np.ndarray
    enrol_durations: Optional[np.ndarray] = None
    test_durations: Optional[np.ndarray] = None

    def calibrate(self, calibration: Calibration, scores: np.ndarray) -> np.ndarray:
        return calibration(scores, self.enrol_durations, self.test_durations)

    def quality(self) -> Optional[np.ndarray]:
        if self.enrol_durations is None or self.test_durations is None:
            return None
        return quality_features(self.enrol_durations, self.test_durations)


def score_system(
    data_dir: Pathlike,
    system_dir: Pathlike,
    eval_sets: Sequence[str],
    valid_set: str = "valid",
    backend_set: str = "backend",
) -> Dict[str, Any]:
    """Score every trial list of ``eval_sets`` with every back end of the system's config.

    :return: the content of ``metrics.json``.
    """
    data_dir, system_dir = Path(data_dir), Path(system_dir)
    config_path = system_dir / CONFIG_NAME
    cfg = load_config(config_path).eval
    backends = _build_backends(cfg, config_path)
    embeddings_dir = system_dir / EMBEDDINGS_DIR
    uses_crops = any(b.uses_crops for b in backends.values())

    if any(b.trained for b in backends.values()):
        _fit_backends(backends, embeddings_dir / backend_set, data_dir / backend_set / "utt2spk")

    valid_embeddings = load_embeddings(embeddings_dir / valid_set, crops=uses_crops)
    valid = _trial_list(
        data_dir / valid_set / f"{TRIALS_PREFIX}valid",
        valid_embeddings,
        embeddings_dir / valid_set,
        _durations(cfg, data_dir / valid_set, valid_embeddings),
    )
    calibrations, valid_results = _calibrate(backends, valid_embeddings, valid)
    deploy = cfg.deploy_backend or min(valid_results, key=lambda n: valid_results[n]["eer"])

    metrics: Dict[str, Any] = {
        "system": system_dir.name,
        "backends": list(backends),
        "deploy_backend": deploy,
        "valid": {"trials": str(valid.path), "results": valid_results},
        "trial_lists": {},
    }
    with atomic_dir(system_dir / SCORES_DIR) as out:
        for set_name in eval_sets:
            embeddings = load_embeddings(embeddings_dir / set_name, crops=uses_crops)
            paths = _trial_paths(data_dir / set_name)
            durations = _durations(cfg, data_dir / set_name, embeddings)
            trial_lists = []
            for path in paths:
                trial_list = _trial_list(path, embeddings, embeddings_dir / set_name, durations)
                if trial_list.name in metrics["trial_lists"]:
                    raise InputError(
                        path,
                        f"a trial list named {trial_list.name!r} exists in "
                        "another evaluation set too",
                        hint="rename one of them",
                    )
                trial_lists.append(trial_list)
            results = _score_set(
                trial_lists, embeddings, backends, calibrations, out, system_dir.name
            )
            for trial_list in trial_lists:
                metrics["trial_lists"][trial_list.name] = {
                    "set": set_name,
                    "trials": str(trial_list.path),
                    "results": results[trial_list.name],
                }
        for name, backend in backends.items():
            if backend.trained:
                save_backend(backend, out / f"{name}.npz")
        save_calibrations(out / CALIBRATION_NAME, calibrations, deploy, trained_on=str(valid.path))
        with atomic_write(out / METRICS_NAME) as f:
            json.dump(metrics, f, indent=2)
            f.write("\n")
    return metrics


def _build_backends(cfg: EvalConfig, config_path: Path) -> Dict[str, Backend]:
    if not cfg.backends:
        raise InputError(config_path, "eval.backends is empty")
    if cfg.deploy_backend not in (None, *cfg.backends):
        raise InputError(
            config_path, f"eval.deploy_backend {cfg.deploy_backend!r} is not one of eval.backends"
        )
    try:
        return {name: build_backend(name, cfg) for name in cfg.backends}
    except KeyError as e:
        raise InputError(config_path, f"eval.backends: {e.args[0]}") from e


def _fit_backends(backends: Dict[str, Backend], set_dir: Path, utt2spk_path: Path) -> None:
    """Fit the trained back ends on the back-end set (training speakers)."""
    train = load_embeddings(set_dir)
    utt2spk = read_table(utt2spk_path, "speaker")
    missing = [key for key in train.keys if key not in utt2spk]
    if missing:
        raise InputError(
            utt2spk_path,
            f"{len(missing)} embedded utterance(s) have no speaker, e.g. {missing[0]!r}",
            hint=f"re-run stage 4 for {set_dir.name}",
        )
    speakers = np.array([utt2spk[key] for key in train.keys])
    if len(np.unique(speakers)) == len(speakers):
        raise InputError(
            utt2spk_path,
            "every speaker has a single utterance",
            hint="the back ends need several utterances per speaker",
        )
    log.info("back-end set: %d utterances of %d speakers", len(speakers), len(np.unique(speakers)))
    for name, backend in backends.items():
        if backend.trained:
            start = time.perf_counter()
            backend.fit(train, speakers)
            log.info("fitted %s in %.1f s", name, time.perf_counter() - start)


def _calibrate(
    backends: Dict[str, Backend], embeddings: Embeddings, valid: TrialList
) -> Tuple[Dict[str, Calibration], Dict[str, Dict[str, float]]]:
    """Fit each back end's calibration on the validation trials; also return their metrics."""
    calibrations, results = {}, {}
    for name, backend in backends.items():
        scores = backend.score(embeddings, valid.enrol, valid.test)
        calibrations[name] = fit_calibration(scores, valid.trials.labels, valid.quality())
        llrs = valid.calibrate(calibrations[name], scores)
        results[name] = evaluate(scores, valid.trials.labels, llrs)
        log.info(
            "valid %s: EER %.2f%%, calibration llr = %.3f * score %+.3f",
            name,
            100 * results[name]["eer"],
            calibrations[name].scale,
            calibrations[name].offset,
        )
    return calibrations, results


def _trial_paths(set_dir: Path) -> List[Path]:
    paths = sorted(set_dir.glob(f"{TRIALS_PREFIX}*"))
    if not paths:
        raise InputError(
            set_dir,
            f"no {TRIALS_PREFIX}<name> files",
            hint="stage 0 writes the trial lists of every evaluation set",
        )
    return paths


def _durations(cfg: EvalConfig, data_set_dir: Path, embeddings: Embeddings) -> Optional[np.ndarray]:
    """Seconds of each embedded utterance, when the calibration uses durations."""
    if not cfg.calibration_durations:
        return None
    return read_utt2dur(data_set_dir / "utt2dur", embeddings.keys)


def _trial_list(
    path: Path, embeddings: Embeddings, source: Path, durations: Optional[np.ndarray]
) -> TrialList:
    trials = read_trials(path)
    if trials.labels.all() or not trials.labels.any():
        raise InputError(path, "needs both target and nontarget trials")
    enrol, test = trial_rows(path, trials, embeddings.index, source / "xvector.scp")
    trial_list = TrialList(path.name[len(TRIALS_PREFIX) :], path, trials, enrol, test)
    if durations is not None:
        trial_list.enrol_durations, trial_list.test_durations = durations[enrol], durations[test]
    return trial_list


def _score_set(
    trial_lists: List[TrialList],
    embeddings: Embeddings,
    backends: Dict[str, Backend],
    calibrations: Dict[str, Calibration],
    out: Path,
    system: str,
) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Score the trial lists of one set (e.g. VoxCeleb1's O, E and H) with every back end.

    Each back end scores all lists' trials in one call, so it prepares the set's embeddings
    (normalisation, projection, cohort statistics) once; the scores are then split by list.

    :return: trial list -> back end -> metrics.
    """
    enrol = np.concatenate([trial_list.enrol for trial_list in trial_lists])
    test = np.concatenate([trial_list.test for trial_list in trial_lists])
    ends = np.cumsum([len(trial_list.enrol) for trial_list in trial_lists])[:-1]
    results: Dict[str, Dict[str, Dict[str, float]]] = {t.name: {} for t in trial_lists}
    curves: Dict[str, Dict[str, Tuple[np.ndarray, np.ndarray]]] = {t.name: {} for t in trial_lists}
    for name, backend in backends.items():
        start = time.perf_counter()
        all_scores = backend.score(embeddings, enrol, test)
        log.info(
            "%s: %d trials of %d list(s) scored in %.2f s",
            name,
            len(enrol),
            len(trial_lists),
            time.perf_counter() - start,
        )
        for trial_list, scores in zip(trial_lists, np.split(all_scores, ends), strict=True):
            labels = trial_list.trials.labels
            write_scores(out / f"{trial_list.name}.{name}.score", trial_list.trials, scores)
            llrs = trial_list.calibrate(calibrations[name], scores)
            result = evaluate(scores, labels, llrs)
            results[trial_list.name][name] = result
            curves[trial_list.name][name] = (scores, labels)
            log.info(
                "%s %s: EER %.2f%%, minDCF0.01 %.3f, Cllr %.3f (%d trials)",
                trial_list.name,
                name,
                100 * result["eer"],
                result["min_dcf_0.01"],
                result["cllr"],
                len(labels),
            )
    for trial_list in trial_lists:
        title = f"{system}: {trial_list.name}"
        plot_det(out / f"{trial_list.name}.det.png", curves[trial_list.name], title)
        plot_histograms(out / f"{trial_list.name}.hist.png", curves[trial_list.name], title)
    return results
