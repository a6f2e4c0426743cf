"""Back ends against their formulas computed directly, trial by trial."""

import numpy as np
import pytest

from oskdft.config import EvalConfig
from oskdft.scoring.backends import (
    BACKENDS,
    ASNorm,
    build_backend,
    load_backend,
    save_backend,
)
from oskdft.scoring.embeddings import Embeddings, load_embeddings
from oskdft.utils.kaldi_io import write_ark_scp

DIM = 6


def speaker_data(seed, num_speakers, utts_per_speaker):
    rng = np.random.default_rng(seed)
    speakers = np.repeat([f"spk{i:02d}" for i in range(num_speakers)], utts_per_speaker)
    centres = rng.normal(size=(num_speakers, DIM)) + 2.0  # an offset the mean removal must undo
    noise = 0.5 * rng.normal(size=(len(speakers), DIM))
    vectors = np.repeat(centres, utts_per_speaker, axis=0) + noise
    keys = [f"{s}-u{i}" for i, s in enumerate(speakers)]
    return Embeddings(keys, vectors.astype(np.float32)), speakers


def unit(v):
    return v / np.linalg.norm(v)


def test_cosine_and_cosine_mean_equal_direct_formula():
    data, _ = speaker_data(0, 5, 4)
    train, train_speakers = speaker_data(1, 8, 5)
    enrol, test = np.array([0, 3, 7, 19]), np.array([1, 10, 7, 2])
    cosine = build_backend("cosine", EvalConfig()).score(data, enrol, test)
    mean = train.vectors.mean(axis=0)
    centred = build_backend("cosine_mean", EvalConfig()).fit(train, train_speakers)
    scores = centred.score(data, enrol, test)
    for i, (e, t) in enumerate(zip(enrol, test, strict=True)):
        x, y = data.vectors[e], data.vectors[t]
        assert cosine[i] == pytest.approx(unit(x) @ unit(y), abs=1e-6)
        assert scores[i] == pytest.approx(unit(x - mean) @ unit(y - mean), abs=1e-6)


def test_asnorm_equals_its_formula_for_a_few_trials():
    data, _ = speaker_data(2, 6, 3)
    train, train_speakers = speaker_data(3, 12, 4)
    top_n = 5
    backend = ASNorm(top_n=top_n, chunk=4).fit(train, train_speakers)  # chunk < rows: chunking
    enrol, test = np.array([0, 4, 9, 17]), np.array([1, 12, 9, 3])
    got = backend.score(data, enrol, test)

    mean = train.vectors.mean(axis=0)
    cohort = np.stack(
        [
            unit(
                np.mean(
                    [
                        unit(v - mean)
                        for v, s in zip(train.vectors, train_speakers, strict=True)
                        if s == spk
                    ],
                    axis=0,
                )
            )
            for spk in sorted(set(train_speakers))
        ]
    )

    def top_stats(v):
        top = np.sort(cohort @ unit(v - mean))[::-1][:top_n]
        return top.mean(), top.std()

    for i, (e, t) in enumerate(zip(enrol, test, strict=True)):
        raw = unit(data.vectors[e] - mean) @ unit(data.vectors[t] - mean)
        (mu_e, sd_e), (mu_t, sd_t) = top_stats(data.vectors[e]), top_stats(data.vectors[t])
        expected = 0.5 * ((raw - mu_e) / sd_e + (raw - mu_t) / sd_t)
        assert got[i] == pytest.approx(expected, abs=1e-5)


def test_fused_equals_mean_of_crop_pair_cosines(tmp_path):
    rng = np.random.default_rng(4)
    keys = ["a-1", "a-2", "b-1"]
    full = {k: rng.normal(size=DIM).astype(np.float32) for k in keys}
    crops = {k: rng.normal(size=(5, DIM)).astype(np.float32) for k in keys}
    write_ark_scp(tmp_path / "xvector.ark", tmp_path / "xvector.scp", full.items())
    write_ark_scp(tmp_path / "xvector_crops.ark", tmp_path / "xvector_crops.scp", crops.items())
    data = load_embeddings(tmp_path, crops=True)
    enrol, test = np.array([0, 0, 1]), np.array([1, 2, 2])
    got = build_backend("fused", EvalConfig()).score(data, enrol, test)
    for i, (e, t) in enumerate(zip(enrol, test, strict=True)):
        a, b = keys[e], keys[t]
        pairs = [unit(x) @ unit(y) for x in crops[a] for y in crops[b]]
        assert len(pairs) == 25
        expected = 0.5 * (unit(full[a]) @ unit(full[b])) + 0.5 * np.mean(pairs)
        assert got[i] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("name", ["cosine_mean", "plda", "asnorm"])
def test_saved_backend_scores_the_same(tmp_path, name):
    data, _ = speaker_data(5, 6, 3)
    train, train_speakers = speaker_data(6, 15, 6)
    cfg = EvalConfig(lda_dim=4, plda_iters=3, asnorm_top_n=4)
    backend = build_backend(name, cfg).fit(train, train_speakers)
    save_backend(backend, tmp_path / f"{name}.npz")
    loaded = load_backend(name, tmp_path / f"{name}.npz")
    enrol, test = np.arange(18), np.arange(18)[::-1]
    np.testing.assert_allclose(loaded.score(data, enrol, test), backend.score(data, enrol, test))


def test_plda_backend_separates_speakers_and_lda_dim_none_keeps_dimension():
    data, speakers = speaker_data(7, 10, 4)
    train, train_speakers = speaker_data(8, 30, 6)
    enrol, test = np.repeat(np.arange(40), 40), np.tile(np.arange(40), 40)
    same = speakers[enrol] == speakers[test]
    for lda_dim in (None, 4):
        backend = build_backend("plda", EvalConfig(lda_dim=lda_dim, plda_iters=5))
        backend.fit(train, train_speakers)
        assert backend.lda.transform.shape == ((lda_dim or DIM), DIM)
        scores = backend.score(data, enrol, test)
        assert scores[same].mean() > scores[~same].mean() + 3  # LLRs: targets far above


def test_registry_names_and_unknown_backend():
    assert BACKENDS.names() == ["asnorm", "cosine", "cosine_mean", "fused", "plda"]
    with pytest.raises(KeyError, match="available: asnorm, cosine"):
        build_backend("lda_cosine", EvalConfig())


@pytest.mark.parametrize("name", [n for n in BACKENDS.names() if BACKENDS.get(n).trained])
def test_a_trained_backend_scores_and_saves_only_once_fitted(tmp_path, name):
    data, _ = speaker_data(0, 3, 2)
    backend = build_backend(name, EvalConfig())
    with pytest.raises(RuntimeError, match="not fitted"):
        backend.score(data, np.array([0]), np.array([1]))
    with pytest.raises(RuntimeError, match="not fitted"):
        save_backend(backend, tmp_path / "backend.npz")
    assert not (tmp_path / "backend.npz").exists()
