import pytest
import torch

from oskdft.losses.aam import AAMSoftmax
from oskdft.losses.kd import build_kd_loss
from oskdft.models.describe import macs_per_second
from oskdft.models.fbank import FbankFrontEnd
from oskdft.models.system import build_model
from oskdft.models.teacher import SSLTeacher, build_ssl_from_arch
from tests.models.tiny import tiny_arch, tiny_system_config

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.mark.parametrize("model_type", ["wav2vec2", "wavlm"])
def test_cuda_embeds_like_cpu_and_trains_under_bf16(model_type):
    torch.manual_seed(0)
    teacher = SSLTeacher(build_ssl_from_arch(tiny_arch(model_type)))
    cfg = tiny_system_config()
    model = build_model(cfg, teacher.hf_model).eval()
    wav, lengths = torch.randn(3, 8000), torch.tensor([8000, 6000, 4321])
    on_cpu = model(wav, lengths)
    model, teacher = model.cuda(), teacher.cuda()
    wav, lengths = wav.cuda(), lengths.cuda()
    assert torch.allclose(model(wav, lengths).cpu(), on_cpu, atol=1e-3)

    model.train()
    kd_loss = build_kd_loss(cfg, 32, 32, teacher.num_layers)
    aam = AAMSoftmax(cfg.backend.embed_dim, num_classes=3).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model.forward_train(wav, lengths, kd=True)
        loss = kd_loss(out.kd_hidden_states, teacher(wav, lengths))
        loss = loss + aam(out.embeddings, torch.tensor([0, 1, 2], device="cuda"))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_cuda_counts_the_macs_the_cpu_counts_and_keeps_the_filter_bank_in_float32():
    torch.manual_seed(0)
    model = build_model(tiny_system_config(), build_ssl_from_arch(tiny_arch())).eval()
    on_cpu = macs_per_second(model)
    assert macs_per_second(model.cuda()) == on_cpu  # attention counted on both
    front_end = FbankFrontEnd().eval()
    wav = 0.1 * torch.randn(2, 16000)
    expected = front_end(wav).hidden_states[0]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        features = front_end.cuda()(wav.cuda()).hidden_states[0]
    assert features.dtype == torch.float32
    assert torch.allclose(features.cpu(), expected, atol=1e-2)
