import torch

from oskdft.config import SystemConfig
from oskdft.losses.aam import AAMSoftmax
from oskdft.models.describe import count_parameters, describe_system
from oskdft.models.system import build_model
from oskdft.models.teacher import XLSR53_ARCH, build_ssl_from_arch, ssl_config_from_arch
from tests.models.tiny import tiny_arch, tiny_system_config


def test_paper_configuration_is_at_most_23_8_percent_of_the_teacher():
    counts = describe_system(SystemConfig(), ssl_config_from_arch(XLSR53_ARCH))
    system, teacher = counts["system"], counts["teacher"]
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
