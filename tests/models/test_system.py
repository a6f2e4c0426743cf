import pytest
import torch
from transformers import AutoConfig

from oskdft.losses.aam import AAMSoftmax
from oskdft.models.system import TrainOutput, build_model
from oskdft.models.teacher import build_ssl_from_arch
from tests.models.tiny import LAYER_NORM_FAMILIES, tiny_arch, tiny_system_config


def tiny_teacher(model_type="wav2vec2", pre_ln=True):
    torch.manual_seed(0)
    return build_ssl_from_arch(tiny_arch(model_type, pre_ln)).eval().requires_grad_(False)


def test_forward_gives_one_embedding_per_utterance():
    model = build_model(tiny_system_config(), tiny_teacher()).eval()
    assert model(torch.randn(3, 8000)).shape == (3, 8)


def test_forward_train_returns_ft_embeddings_and_kd_states():
    model = build_model(tiny_system_config(), tiny_teacher()).eval()
    wav = torch.randn(2, 8000)
    out = model.forward_train(wav, kd=True)
    assert isinstance(out, TrainOutput)
    assert out.embeddings.shape == (2, 8)
    assert len(out.kd_hidden_states) == 3 and out.kd_hidden_states[-1].shape == (2, 24, 32)
    assert torch.allclose(out.embeddings, model(wav), atol=1e-5)
    assert model.forward_train(wav, kd=False).kd_hidden_states is None


def test_kd_loss_reaches_no_adapter_and_sv_loss_reaches_adapters_and_shared_weights():
    model = build_model(tiny_system_config(), tiny_teacher())
    with torch.no_grad():  # trained adapters, so a zero up-projection cannot hide a gradient
        for p in model.param_groups()["adapters"]:
            p.normal_(0, 0.1)
    out = model.forward_train(torch.randn(4, 8000), kd=True)
    groups = model.param_groups()

    kd_loss = out.kd_hidden_states[-1].pow(2).mean()
    kd_loss.backward(retain_graph=True)
    assert all(p.grad is None or not p.grad.any() for p in groups["adapters"])
    assert any(p.grad is not None and p.grad.any() for p in groups["ssl"])
    model.zero_grad(set_to_none=True)

    sv_loss = AAMSoftmax(8, num_classes=3)(out.embeddings, torch.tensor([0, 1, 2, 0]))
    sv_loss.backward()
    adapters = model.ssl.adapters
    assert all(a.up.weight.grad.any() and a.down.weight.grad.any() for a in adapters)
    assert model.ssl.model.encoder.layers[0].attention.q_proj.weight.grad.any()
    assert model.ssl.model.feature_extractor.conv_layers[0].conv.weight.grad.any()


@pytest.mark.parametrize("model_type,pre_ln", LAYER_NORM_FAMILIES)
def test_a_padded_batch_embeds_each_utterance_as_if_alone(model_type, pre_ln):
    cfg = tiny_system_config()
    model = build_model(cfg, tiny_teacher(model_type, pre_ln)).eval()
    lengths = torch.tensor([8000, 5000, 3210])
    wav = torch.randn(3, 8000)
    wav[1, 5000:] = torch.randn(3000)  # garbage past the end must not matter
    batch = model(wav, lengths)
    for i, n in enumerate(lengths.tolist()):
        alone = model(wav[i : i + 1, :n])
        assert torch.allclose(batch[i], alone[0], atol=1e-4), i


def test_param_groups_partition_every_parameter():
    for adapters in (True, False):
        model = build_model(tiny_system_config(ssl={"adapters": adapters}), tiny_teacher())
        groups = model.param_groups()
        assert groups.keys() == {"backend", "adapters", "ssl"}
        ids = [id(p) for group in groups.values() for p in group]
        assert len(ids) == len(set(ids)) == len(list(model.parameters()))
        assert bool(groups["adapters"]) == adapters
        assert not any("adapter" in key for key in model.ssl_encoder.state_dict())


def test_weighted_sum_backend_learns_layer_weights():
    cfg = tiny_system_config(backend={"input": "weighted_sum"})
    model = build_model(cfg, tiny_teacher())
    weights = model.backend_input.layer_logits
    assert weights.shape == (3,) and any(p is weights for p in model.param_groups()["backend"])
    # A random projection: a plain sum of batch-normalised embeddings has no gradient.
    (model(torch.randn(2, 8000)) * torch.randn(2, 8)).sum().backward()
    assert weights.grad.any()


def test_sources_student_teacher_scratch():
    teacher = tiny_teacher()
    student = build_model(tiny_system_config(), teacher)
    assert student.ssl_encoder.config.num_hidden_layers == 2

    fine_tuned = build_model(tiny_system_config(ssl={"source": "teacher"}), teacher)
    assert fine_tuned.ssl_encoder.config.num_hidden_layers == 3
    assert fine_tuned.ssl_encoder is not teacher
    assert all(p.requires_grad for p in fine_tuned.parameters())
    assert not any(p.requires_grad for p in teacher.parameters())  # the teacher is untouched

    arch = tiny_arch("hubert", pre_ln=False, num_hidden_layers=1)
    scratch = build_model(tiny_system_config(ssl={"source": "scratch", "arch": arch}))
    assert scratch.ssl_encoder.config.model_type == "hubert"

    with pytest.raises(ValueError, match="needs the teacher"):
        build_model(tiny_system_config())
    with pytest.raises(ValueError, match="ssl.arch"):
        build_model(tiny_system_config(ssl={"source": "scratch"}))
    with pytest.raises(KeyError, match="available: fbank, scratch, student, teacher"):
        build_model(tiny_system_config(ssl={"source": "nonsense"}), teacher)


def test_a_trained_model_rebuilds_from_its_saved_encoder_config_without_the_teacher(tmp_path):
    cfg = tiny_system_config(ssl={"thin_cnn_dim": 8}, backend={"input": "weighted_sum"})
    model = build_model(cfg, tiny_teacher("wavlm")).eval()
    with torch.no_grad():
        for p in model.param_groups()["adapters"]:
            p.normal_(0, 0.1)
    model.ssl_encoder.save_pretrained(tmp_path / "ssl")
    rebuilt = build_model(cfg, ssl_config=AutoConfig.from_pretrained(tmp_path / "ssl"))
    rebuilt.load_state_dict(model.state_dict())  # strict: the same architecture
    wav = torch.randn(2, 8000)
    assert torch.equal(rebuilt.eval()(wav), model(wav))


def test_an_fbank_system_has_no_encoder_and_trains_its_back_end_alone():
    cfg = tiny_system_config(
        ssl={"source": "fbank"}, kd={"loss": "none"}, backend={"instance_norm": False}
    )
    cfg.ssl.fbank.num_mel_bins = 24
    model = build_model(cfg)  # no teacher needed
    assert model.ssl_encoder is None and model.ssl.hidden_size == 24
    groups = model.param_groups()
    assert groups["ssl"] == [] and groups["adapters"] == []
    assert len(groups["backend"]) == len(list(model.parameters()))
    assert {name for name, _ in model.ssl.named_buffers()} == {"dft_kernel", "mel_kernel"}
    embeddings = model.forward_train(torch.randn(3, 12000), kd=False).embeddings
    assert embeddings.shape == (3, 8)
    AAMSoftmax(8, num_classes=3)(embeddings, torch.tensor([0, 1, 2])).backward()
    assert model.ecapa.conv_in.weight.grad.any()
    lengths = torch.tensor([12000, 7000])
    wav = torch.randn(2, 12000)
    model.eval()
    with torch.no_grad():
        batch = model(wav, lengths)
        assert torch.allclose(batch[1], model(wav[1:, :7000])[0], atol=1e-4)
