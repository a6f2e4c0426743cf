"""Training data loading: the dataset, the one-window-per-utterance sampler, collation."""

from collections import Counter

import numpy as np
import pytest
import torch
from lhotse import CutSet
from torch.utils.data import DataLoader

from oskdft.config import AugmentConfig
from oskdft.data.audio import load_audio
from oskdft.data.dataset import OneWindowPerUtteranceSampler, TrainingWindows, collate_windows
from oskdft.data.windows import make_windows_from_config, read_train_speakers
from oskdft.layout import windows_path
from tests.data.toy_corpus import AUG_SETS, RATE, make_toy_corpus, toy_data_config


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    data = make_toy_corpus(tmp_path_factory.mktemp("toy"))
    make_windows_from_config(data, toy_data_config(), "train", AUG_SETS)
    return data


@pytest.fixture(scope="module")
def clean(data):
    return TrainingWindows.from_data_dir(data, augment=None, seed=0)


def test_dataset_windows_are_the_manifest_windows(data, clean):
    manifest = list(CutSet.from_file(windows_path(data)))
    assert len(clean) == len(manifest)
    for i, window in enumerate(manifest):
        assert clean.window(i).to_dict() == window.to_dict()
    utterances = Counter(w.custom["utterance"] for w in manifest)
    assert clean.windows_per_utterance.tolist() == list(utterances.values())


def test_examples_carry_the_speaker_class(data, clean):
    speakers = read_train_speakers(data)
    for i in range(0, len(clean), 7):
        example = clean[(0, i)]
        assert speakers[example["speaker"]] == clean.window(i).supervisions[0].speaker
        np.testing.assert_array_equal(example["student_wav"], load_audio(clean.window(i)))
        assert "teacher_wav" not in example and "teacher_hidden" not in example


def test_sampler_covers_every_utterance_once_per_epoch_across_two_ranks(clean):
    counts = clean.windows_per_utterance
    ranks = [OneWindowPerUtteranceSampler(counts, num_replicas=2, rank=r, seed=5) for r in (0, 1)]
    picks = []
    for epoch in range(3):
        drawn = []
        for sampler in ranks:
            sampler.set_epoch(epoch)
            assert len(sampler) == len(counts) // 2
            drawn += [window for e, window in sampler if e == epoch]
        utterances = [clean.index.utterance_of(w) for w in drawn]
        assert sorted(utterances) == list(range(clean.num_utterances))
        picks.append(drawn)
    assert picks[0] != picks[1] != picks[2]  # another order and other windows each epoch


def test_sampler_pads_or_drops_an_uneven_split():
    counts = [1, 2, 3, 1, 2]  # 5 utterances on 2 ranks
    padded = [list(OneWindowPerUtteranceSampler(counts, 2, r, seed=1)) for r in (0, 1)]
    assert [len(p) for p in padded] == [3, 3]
    assert len({w for p in padded for _, w in p}) == 5  # all five, one repeated
    dropped = [list(OneWindowPerUtteranceSampler(counts, 2, r, drop_last=True)) for r in (0, 1)]
    assert [len(p) for p in dropped] == [2, 2]


def test_every_window_of_an_utterance_gets_drawn():
    sampler = OneWindowPerUtteranceSampler([4], seed=0)
    drawn = Counter()
    for epoch in range(400):
        sampler.set_epoch(epoch)
        drawn.update(w for _, w in sampler)
    assert sorted(drawn) == [0, 1, 2, 3]
    assert all(80 < n < 120 for n in drawn.values())  # uniform: 100 each


def test_resuming_mid_epoch_continues_where_training_stopped(clean):
    counts = clean.windows_per_utterance
    sampler = OneWindowPerUtteranceSampler(counts, seed=9)
    sampler.set_epoch(2)
    full = list(sampler)
    state = sampler.state_dict(consumed=5)
    resumed = OneWindowPerUtteranceSampler(counts, seed=9)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)
    assert len(resumed) == len(full) - 5
    assert list(resumed) == full[5:]
    resumed.set_epoch(3)
    assert len(list(resumed)) == len(full)
    with pytest.raises(ValueError, match="cannot resume"):
        OneWindowPerUtteranceSampler(counts, seed=10).load_state_dict(state)


def test_teacher_input_stays_clean_while_the_student_is_augmented(data):
    dataset = TrainingWindows.from_data_dir(
        data, AugmentConfig(prob=1.0, choices={"noise": 1}), seed=1, teacher_wav=True
    )
    for i in range(0, len(dataset), 5):
        example = dataset[(0, i)]
        clean = load_audio(dataset.window(i))
        np.testing.assert_array_equal(example["teacher_wav"], clean)
        assert not np.allclose(example["student_wav"], clean, atol=1e-4)


def test_same_seed_same_batches_with_any_number_of_workers(data):
    def batches(seed, workers):
        dataset = TrainingWindows.from_data_dir(data, AugmentConfig(), seed=seed, teacher_wav=True)
        sampler = OneWindowPerUtteranceSampler(dataset.windows_per_utterance, seed=seed)
        sampler.set_epoch(1)
        loader = DataLoader(
            dataset, batch_size=4, sampler=sampler, num_workers=workers, collate_fn=collate_windows
        )
        return list(loader)

    reference = batches(seed=4, workers=0)
    for other in (batches(seed=4, workers=2), batches(seed=4, workers=0)):
        for a, b in zip(reference, other, strict=True):
            assert a.keys() == b.keys()
            assert all(torch.equal(a[k], b[k]) for k in a)
    changed = batches(seed=5, workers=0)
    assert not all(
        torch.equal(a["student_wav"], b["student_wav"])
        for a, b in zip(reference, changed, strict=True)
    )


def test_collate_stacks_examples(clean):
    batch = collate_windows([clean[(0, i)] for i in (0, 3, 6)])
    assert batch["student_wav"].shape == (3, 2 * RATE)
    assert batch["student_wav"].dtype == torch.float32
    assert batch["speaker"].dtype == torch.int64 and batch["window"].tolist() == [0, 3, 6]
