import numpy as np
import pytest
from lhotse import CutSet

from oskdft.config import EvalConfig
from oskdft.data.audio import SAMPLE_RATE, load_audio
from oskdft.embedding import extract
from oskdft.embedding.extract import embed_cuts, embed_views
from oskdft.embedding.shards import split_by_duration
from oskdft.embedding.views import crop_audio, crop_starts, kd_crops, length_batches
from oskdft.layout import manifest_path
from oskdft.scoring.backends import build_backend
from oskdft.scoring.embeddings import Embeddings, mean_unit_crops
from tests.embedding.tiny_system import (
    embed_alone,
    kd_branch_model,
    original_fused_score,
    scratch_config,
    tiny_model,
    write_set,
)

# Lengths around the 1 s crop of these tests: shorter, equal, longer; and a spread for batching.
SECONDS = [0.4, 1.0, 1.7, 2.35, 0.9, 3.1, 1.25, 0.6]


@pytest.fixture(scope="module")
def model():
    return tiny_model(scratch_config())


@pytest.fixture(scope="module")
def cuts(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_set(root, "test", SECONDS)
    return list(CutSet.from_file(manifest_path(root / "data", "test", "cuts")))


def test_length_batches_cover_every_item_once_within_the_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 100, size=200).tolist()
    batches = length_batches(lengths, max_samples=300)
    assert sorted(i for batch in batches for i in batch) == list(range(200))
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert lengths[batch[0]] == longest
        assert len(batch) * longest <= 300
    order = [lengths[i] for batch in batches for i in batch]
    assert order == sorted(order, reverse=True)
    assert length_batches([500, 20], max_samples=300) == [[0], [1]]  # too long: alone


def test_batched_by_length_equals_one_at_a_time(model, cuts):
    # 2.5 s of padded audio per batch: several batches, most of them with padded rows.
    batched = embed_cuts(model, cuts, "cpu", batch_seconds=2.5)
    assert list(batched) == [cut.id for cut in cuts]
    for cut in cuts:
        vector = batched[cut.id]
        assert vector.dtype == np.float32 and vector.shape == (8,)
        np.testing.assert_allclose(vector, embed_alone(model, load_audio(cut)), atol=1e-4)


def test_embedding_leaves_the_model_in_its_mode(model, cuts):
    model.train()
    try:
        one = embed_cuts(model, cuts[:2], "cpu")
        assert model.training
        model.eval()
        np.testing.assert_allclose(
            one[cuts[0].id], embed_cuts(model, cuts[:1], "cpu")[cuts[0].id], atol=1e-5
        )  # dropout was off while embedding
    finally:
        model.eval()


def test_crops_start_at_linspace_positions():
    audio = np.arange(5 * SAMPLE_RATE, dtype=np.float32)  # each sample holds its own index
    crops = crop_audio(audio, 3 * SAMPLE_RATE, 5)
    expected_starts = [0, 8000, 16000, 24000, 32000]  # linspace(0, 5 s - 3 s, 5)
    assert crops.shape == (5, 3 * SAMPLE_RATE)
    assert crops[:, 0].tolist() == expected_starts
    assert (np.diff(crops, axis=1) == 1).all()  # contiguous
    # Positions round down: linspace(0, 10, 4) = 0, 3.33, 6.67, 10.
    assert crop_starts(13, 3, 4).tolist() == [0, 3, 6, 10]


def test_an_utterance_shorter_than_a_crop_is_repeated_to_the_crop_length():
    audio = np.arange(1, 8, dtype=np.float32)  # 7 samples, crops of 10
    crops = crop_audio(audio, 10, 3)
    assert crops.tolist() == [[1, 2, 3, 4, 5, 6, 7, 1, 2, 3]] * 3
    exact = crop_audio(audio, 7, 2)  # exactly one crop long: that crop, num_crops times
    assert exact.tolist() == [audio.tolist()] * 2


def test_embed_views_embeds_each_crop_and_decodes_each_cut_once(model, cuts, monkeypatch):
    decoded = []

    def counting_load_audio(cut):
        decoded.append(cut.id)
        return load_audio(cut)

    monkeypatch.setattr(extract, "load_audio", counting_load_audio)
    full, crops = embed_views(
        model, cuts, "cpu", batch_seconds=2.5, crop_seconds=1.0, num_crops=3, crop_batch_size=7
    )
    assert sorted(decoded) == sorted(cut.id for cut in cuts)
    assert list(crops) == list(full) == [cut.id for cut in cuts]
    for key, vector in embed_cuts(model, cuts, "cpu", batch_seconds=2.5).items():
        np.testing.assert_array_equal(full[key], vector)
    for cut in cuts:
        audio = load_audio(cut)
        expected = np.stack([embed_alone(model, c) for c in crop_audio(audio, SAMPLE_RATE, 3)])
        assert crops[cut.id].shape == (3, 8)
        np.testing.assert_allclose(crops[cut.id], expected, atol=1e-4)
    short = next(cut for cut in cuts if cut.duration < 1.0)
    assert np.allclose(crops[short.id][0], crops[short.id][1:], atol=1e-5)  # all the same crop


def test_split_covers_every_utterance_once_balanced_and_deterministic():
    rng = np.random.default_rng(1)
    items = [(f"u{i:03d}", float(d)) for i, d in enumerate(rng.uniform(0.5, 20, size=101))]
    shares = split_by_duration(items, 4)
    ids = [key for share in shares for key in share]
    assert sorted(ids) == sorted(key for key, _ in items)  # each exactly once
    position = {key: i for i, (key, _) in enumerate(items)}
    assert all(
        [position[k] for k in share] == sorted(position[k] for k in share) for share in shares
    )  # each share in manifest order
    duration = dict(items)
    totals = [sum(duration[k] for k in share) for share in shares]
    assert max(totals) - min(totals) <= max(duration.values())
    assert split_by_duration(items, 4) == shares
    assert split_by_duration(items[:2], 3)[2] == []  # more jobs than utterances: idle jobs


def test_audio_loading_workers_give_the_same_embeddings(model, cuts):
    alone = embed_cuts(model, cuts[:4], "cpu", batch_seconds=3.0)
    with_workers = embed_cuts(model, cuts[:4], "cpu", batch_seconds=3.0, num_workers=2)
    assert list(with_workers) == list(alone)
    for key in alone:
        np.testing.assert_allclose(with_workers[key], alone[key], atol=1e-6)


@pytest.mark.parametrize("original", [True, False])
def test_original_crop_branches_send_crops_0_and_1_through_the_kd_branch(cuts, original):
    model = tiny_model(scratch_config(ssl={"doubled_residual": True}))
    plain = kd_branch_model(model)
    long_cuts = [cut for cut in cuts if cut.duration > 1.5]
    full, crops = embed_views(
        model,
        long_cuts,
        "cpu",
        crop_seconds=1.0,
        num_crops=5,
        crop_batch_size=10,
        num_kd_crops=kd_crops(5, original),
    )
    expected = {}
    for cut in long_cuts:
        rows = crop_audio(load_audio(cut), SAMPLE_RATE, 5)
        # The original: the 5 crops as one batch, the first 5 // 2 rows on the KD branch.
        expected[cut.id] = np.stack(
            [
                embed_alone(plain if original and i < 5 // 2 else model, c)
                for i, c in enumerate(rows)
            ]
        )
        np.testing.assert_allclose(crops[cut.id], expected[cut.id], atol=1e-4)
    # ... and the fused score of stage 5 is the original's score of those embeddings.
    data = Embeddings(
        list(full), np.stack(list(full.values())), mean_unit_crops(np.stack(list(crops.values())))
    )
    enrol, test = np.array([0, 0, 1]), np.array([1, 2, 2])
    ours = build_backend("fused", EvalConfig()).score(data, enrol, test)
    for score, i, j in zip(ours, enrol, test, strict=True):
        a, b = data.keys[i], data.keys[j]
        assert score == pytest.approx(
            original_fused_score(full[a], full[b], expected[a], expected[b]), abs=1e-5
        )
    kd_crop = embed_alone(plain, crop_audio(load_audio(long_cuts[0]), SAMPLE_RATE, 5)[0])
    assert np.allclose(crops[long_cuts[0].id][0], kd_crop, atol=1e-4) == original
