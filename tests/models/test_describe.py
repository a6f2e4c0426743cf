import pytest
import torch

from oskdft.config import SystemConfig
from oskdft.losses.aam import AAMSoftmax
from oskdft.models.describe import count_parameters, describe_system, macs_per_second
from oskdft.models.system import build_model
from oskdft.models.teacher import (
    XLSR53_ARCH,
    build_ssl_from_arch,
    num_frames,
    ssl_config_from_arch,
)
from tests.models.tiny import tiny_arch, tiny_system_config


def test_paper_configuration_is_at_most_23_8_percent_of_the_teacher():
    counts = describe_system(SystemConfig(), ssl_config_from_arch(XLSR53_ARCH))
    system, teacher = counts["system"]["params"], counts["teacher"]["params"]
    # method.md: XLSR-53 has 315.4M parameters, its 4-layer student 63.5M.
    assert abs(teacher["ssl"] / 1e6 - 315.4) < 0.1
    assert abs(system["ssl"] / 1e6 - 63.5) < 0.1
    # The abstract: student + ECAPA-TDNN is ~76.2% smaller than teacher + ECAPA-TDNN.
    student_total = system["ssl"] + system["adapters"] + system["backend"]
    assert student_total <= 0.238 * (teacher["ssl"] + teacher["backend"])
    # Adapters: 4 layers x (LayerNorm 2x1024 + 1024x64 + 64 + 64x1024 + 1024).
    assert system["adapters"] == 4 * (2 * 1024 + 1024 * 64 + 64 + 64 * 1024 + 1024)
    assert teacher["adapters"] == 0 and teacher["backend"] == system["backend"]


def test_count_parameters_covers_the_model_and_the_aam_head():
    torch.manual_seed(0)
    model = build_model(tiny_system_config(), build_ssl_from_arch(tiny_arch()))
    head = AAMSoftmax(8, num_classes=5)
    counts = count_parameters(model, head)
    assert counts["aam_head"] == 5 * 8
    assert counts["total"] == sum(p.numel() for p in model.parameters()) + 40
    assert counts["adapters"] == sum(p.numel() for p in model.ssl.adapters.parameters())
    assert "aam_head" not in count_parameters(model)


def ecapa_macs(input_dim, frames, channels, embed_dim, pooled, attention, scale=8, se=128):
    """Multiply-accumulates of ECAPA-TDNN on ``frames`` frames, layer by layer (weights times
    the positions they are applied at; SE and the final layer act once)."""
    width = channels // scale
    block = (
        2 * channels * channels * frames  # the 1x1 convolutions in and out
        + (scale - 1) * width * width * 3 * frames  # the Res2 convolutions, kernel 3
        + 2 * channels * se
    )  # squeeze-excitation on the time average
    return (
        input_dim * channels * 5 * frames
        + 3 * block
        + 3 * channels * pooled * frames  # the convolution before pooling
        + (3 * pooled * attention + attention * pooled) * frames  # attention
        + 2 * pooled * embed_dim
    )


def fbank_config():
    return tiny_system_config(
        ssl={"source": "fbank"},
        kd={"loss": "none"},
        backend={"pooled_channels": 48, "attention_channels": 16},
    )


def test_an_fbank_systems_macs_are_its_filter_bank_and_ecapa_layer_by_layer():
    cfg = fbank_config()
    macs = macs_per_second(build_model(cfg))
    frames = 1 + (16000 - 400) // 160  # 25 ms frames every 10 ms that fit in one second
    dft = 2 * 257 * 400 * frames  # 512-point spectra (257 bins) of 400-sample frames
    mel = 80 * 257 * frames
    assert macs["ssl"] == dft + mel
    assert macs["total"] - macs["ssl"] == ecapa_macs(80, frames, 16, 8, 48, 16)


@pytest.mark.parametrize("backend_input", ["last", "weighted_sum"])
def test_an_ssl_systems_back_end_macs_are_ecapa_on_the_encoders_frames(backend_input):
    teacher = build_ssl_from_arch(tiny_arch())
    cfg = tiny_system_config(
        backend={"input": backend_input, "pooled_channels": 48, "attention_channels": 16}
    )
    model = build_model(cfg, teacher).train()
    macs = macs_per_second(model)
    frames = num_frames(teacher.config, 16000)
    assert macs["total"] - macs["ssl"] == ecapa_macs(32, frames, 16, 8, 48, 16)
    assert macs["ssl"] > 0
    assert model.training  # counted in evaluation mode, given back as it was
    assert macs_per_second(model) == macs  # deterministic


def test_describe_counts_on_the_meta_device_what_the_real_model_has():
    teacher = build_ssl_from_arch(tiny_arch())
    cfg = tiny_system_config()
    description = describe_system(cfg, teacher.config)
    model = build_model(cfg, teacher)
    assert description["system"]["macs_per_second"] == macs_per_second(model)
    assert description["system"]["params"] == count_parameters(model)
    assert (
        description["teacher"]["macs_per_second"]["ssl"]
        > description["system"]["macs_per_second"]["ssl"]
    )  # 3 layers against 2
    fbank = describe_system(fbank_config())
    assert fbank.keys() == {"system"} and fbank["system"]["params"]["ssl"] == 0
