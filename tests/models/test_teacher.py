import huggingface_hub.constants
import pytest
import torch
from transformers import BertConfig

from oskdft.models.teacher import (
    SSLTeacher,
    build_ssl_from_arch,
    load_teacher,
    load_teacher_config,
    num_frames,
)
from oskdft.utils.errors import InputError
from tests.models.tiny import FAMILIES, tiny_arch


@pytest.mark.parametrize("model_type,pre_ln", FAMILIES)
def test_hidden_states_follow_hf_convention(model_type, pre_ln):
    torch.manual_seed(0)
    teacher = SSLTeacher(build_ssl_from_arch(tiny_arch(model_type, pre_ln)))
    wav = torch.randn(2, 8000)
    hidden_states = teacher(wav)
    hf = teacher.hf_model(wav, output_hidden_states=True)

    assert len(hidden_states) == teacher.num_layers + 1 == 4
    for h in hidden_states:
        assert h.shape == (2, teacher.num_frames(8000), teacher.hidden_size)
    # Index L is last_hidden_state (after the final LayerNorm of pre-LN models) ...
    assert torch.equal(hidden_states[-1], hf.last_hidden_state)
    # ... and the others are the layer inputs/outputs Hugging Face records.
    for ours, theirs in zip(hidden_states[:-1], hf.hidden_states[:-1], strict=True):
        assert torch.equal(ours, theirs)
    assert teacher.hidden_layers(wav, [0, 3]).keys() == {0, 3}


def test_teacher_is_frozen_and_stays_in_eval_mode():
    teacher = SSLTeacher(build_ssl_from_arch(tiny_arch()))
    teacher.train()
    assert not teacher.training and not teacher.hf_model.training
    assert not any(p.requires_grad for p in teacher.parameters())
    assert teacher(torch.randn(1, 4000))[-1].grad_fn is None


def test_num_frames_matches_the_cnn_output():
    model = build_ssl_from_arch(tiny_arch())
    for samples in (400, 4000, 16000, 16321):
        frames = model.feature_extractor(torch.zeros(1, samples)).shape[-1]
        assert num_frames(model.config, samples) == frames
    # 50 frames per second of 16 kHz audio (stride 320).
    assert num_frames(model.config, 64000) - num_frames(model.config, 32000) == 100


def test_load_teacher_from_a_saved_directory(tmp_path):
    model = build_ssl_from_arch(tiny_arch("wavlm", pre_ln=False))
    model.save_pretrained(tmp_path / "ssl")
    teacher = load_teacher(str(tmp_path / "ssl"))
    wav = torch.randn(1, 4000)
    assert type(teacher.hf_model) is type(model)
    assert torch.equal(teacher(wav)[-1], SSLTeacher(model)(wav)[-1])
    assert load_teacher_config(str(tmp_path / "ssl")).num_hidden_layers == 3


def test_a_directory_that_is_not_a_model_says_what_to_pass(tmp_path):
    with pytest.raises(InputError, match="no config.json") as error:
        load_teacher(str(tmp_path))
    assert "save_pretrained" in str(error.value)
    with pytest.raises(InputError, match="no such model directory"):
        load_teacher(str(tmp_path / "missing"))
    with pytest.raises(InputError, match="no such model directory"):
        load_teacher("exp/teacher_ft/final/ssl_that_does_not_exist")


def test_a_non_speech_model_is_refused(tmp_path):
    BertConfig().save_pretrained(tmp_path)
    with pytest.raises(InputError, match="model_type 'bert'"):
        load_teacher_config(str(tmp_path))


def test_a_hub_name_without_network_says_what_to_pass(monkeypatch):
    # Offline mode gives the no-network failure at once instead of after retries.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(InputError, match="cannot load") as error:
        load_teacher("oskdft-tests/no-such-model")
    assert "Hugging Face cache" in str(error.value)
    assert str(error.value).startswith("oskdft-tests/no-such-model:")


def test_unknown_arch_model_type_is_an_error():
    with pytest.raises(ValueError, match="wav2vec2, hubert, wavlm"):
        build_ssl_from_arch({"model_type": "bert"})
