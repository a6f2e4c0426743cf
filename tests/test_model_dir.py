import dataclasses
import json

import pytest
import torch

from oskdft.model_dir import load_final, save_final
from oskdft.models.describe import count_parameters, macs_per_second
from oskdft.models.system import build_model
from oskdft.models.teacher import build_ssl_from_arch, load_teacher
from oskdft.utils.errors import InputError
from tests.embedding.conftest import one_torch_thread  # noqa: F401 (autouse: one thread)
from tests.embedding.tiny_system import scratch_config, tiny_model
from tests.models.tiny import FAMILIES, tiny_arch, tiny_system_config


def student_of_tiny_teacher(model_type="wav2vec2", pre_ln=True):
    """A distilled student: 2 of the teacher's 3 layers, a thinner CNN, trained adapters."""
    torch.manual_seed(0)
    teacher = build_ssl_from_arch(tiny_arch(model_type, pre_ln))
    cfg = tiny_system_config(ssl={"thin_cnn_dim": 8, "doubled_residual": True})
    model = build_model(cfg, teacher)
    with torch.no_grad():
        for p in model.parameters():  # "training": move every weight off its initial value
            p.add_(0.01 * torch.randn_like(p))
    return model.eval(), cfg


@pytest.mark.parametrize("model_type,pre_ln", FAMILIES)
def test_round_trip_rebuilds_the_model_without_the_teacher(tmp_path, model_type, pre_ln):
    model, cfg = student_of_tiny_teacher(model_type, pre_ln)
    save_final(tmp_path / "final", model, cfg, {"epoch": 7, "valid_eer": 0.4})

    loaded, loaded_cfg, meta = load_final(tmp_path / "final")
    assert loaded_cfg == cfg
    assert not loaded.training
    wav, lengths = torch.randn(2, 12000), torch.tensor([12000, 7000])
    with torch.no_grad():
        assert torch.equal(loaded(wav, lengths), model(wav, lengths))
    assert meta["epoch"] == 7 and meta["valid_eer"] == 0.4
    assert meta["params"] == count_parameters(model)
    assert meta["macs_per_second"] == macs_per_second(model)
    assert meta["params"]["adapters"] > 0


def test_model_pt_holds_tensors_only(tmp_path):
    model, cfg = student_of_tiny_teacher()
    save_final(tmp_path / "final", model, cfg, {})
    state = torch.load(tmp_path / "final" / "model.pt", weights_only=True)
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_ssl_dir_is_the_encoder_without_adapters_and_loads_as_a_teacher(tmp_path):
    model, cfg = student_of_tiny_teacher()
    save_final(tmp_path / "final", model, cfg, {})
    teacher = load_teacher(str(tmp_path / "final" / "ssl"))
    assert teacher.num_layers == 2
    assert teacher.hf_model.config.conv_dim[0] == 8
    saved = teacher.hf_model.state_dict()
    assert saved.keys() == model.ssl_encoder.state_dict().keys()
    assert all(torch.equal(saved[k], v) for k, v in model.ssl_encoder.state_dict().items())
    assert not any("adapter" in key for key in saved)


def test_a_failed_save_keeps_the_previous_final(tmp_path):
    model, cfg = student_of_tiny_teacher()
    save_final(tmp_path / "final", model, cfg, {"epoch": 1})
    before = {p.name: p.read_bytes() for p in (tmp_path / "final").iterdir() if p.is_file()}
    with pytest.raises(TypeError):
        save_final(tmp_path / "final", model, cfg, {"epoch": object()})  # not JSON
    after = {p.name: p.read_bytes() for p in (tmp_path / "final").iterdir() if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir()] == ["final"]  # no temporary directory left


def test_missing_final_dir_says_to_run_stage_3(tmp_path):
    with pytest.raises(InputError, match="stage 3"):
        load_final(tmp_path / "final")


@pytest.mark.parametrize("name", ["config.yaml", "model.pt", "ssl/config.json", "meta.json"])
def test_a_missing_file_is_named(tmp_path, name):
    cfg = scratch_config()
    save_final(tmp_path / "final", tiny_model(cfg), cfg, {})
    (tmp_path / "final" / name).unlink()
    with pytest.raises(InputError, match=name.replace(".", r"\.")):
        load_final(tmp_path / "final")


def test_corrupt_files_are_named(tmp_path):
    cfg = scratch_config()
    final = tmp_path / "final"
    save_final(final, tiny_model(cfg), cfg, {})
    model_pt = (final / "model.pt").read_bytes()
    (final / "model.pt").write_bytes(model_pt[: len(model_pt) // 2])
    with pytest.raises(InputError, match="model.pt: not a readable state dict"):
        load_final(final)

    (final / "model.pt").write_bytes(model_pt)
    (final / "meta.json").write_text("{")
    with pytest.raises(InputError, match="meta.json: not valid JSON"):
        load_final(final)


def test_weights_of_another_architecture_are_refused(tmp_path):
    cfg = scratch_config()
    save_final(tmp_path / "final", tiny_model(cfg), cfg, {})
    other = dataclasses.replace(cfg, ssl=dataclasses.replace(cfg.ssl, adapters=False))
    save_final(tmp_path / "other", tiny_model(other), other, {})
    (tmp_path / "final" / "model.pt").write_bytes((tmp_path / "other" / "model.pt").read_bytes())
    with pytest.raises(InputError, match="model.pt: does not fit"):
        load_final(tmp_path / "final")
    json.loads((tmp_path / "final" / "meta.json").read_text())  # untouched by the failure


def test_an_fbank_system_round_trips_without_an_encoder_directory(tmp_path):
    cfg = tiny_system_config(ssl={"source": "fbank"}, kd={"loss": "none"})
    cfg.ssl.fbank.num_mel_bins = 24
    model = tiny_model(cfg)
    save_final(tmp_path / "final", model, cfg, {})
    assert sorted(p.name for p in (tmp_path / "final").iterdir()) == [
        "config.yaml",
        "meta.json",
        "model.pt",
    ]
    loaded, loaded_cfg, meta = load_final(tmp_path / "final")
    assert loaded_cfg == cfg and loaded.ssl_encoder is None
    assert meta["params"]["ssl"] == 0 and meta["macs_per_second"]["ssl"] > 0
    wav, lengths = torch.randn(2, 12000), torch.tensor([12000, 7000])
    with torch.no_grad():
        assert torch.equal(loaded(wav, lengths), model(wav, lengths))
