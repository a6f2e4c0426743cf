import copy

import pytest
import torch

from oskdft.models.student import BranchedSSL, make_student
from oskdft.models.teacher import SSLTeacher, build_ssl_from_arch
from tests.models.tiny import FAMILIES, tiny_arch


def teacher_model(model_type="wav2vec2", pre_ln=True, **fields):
    torch.manual_seed(0)
    return build_ssl_from_arch(tiny_arch(model_type, pre_ln, **fields))


def params(module, prefix=""):
    return {k: v for k, v in module.state_dict().items() if k.startswith(prefix)}


def randomise_adapters(ssl: BranchedSSL):
    with torch.no_grad():
        for p in ssl.adapters.parameters():
            p.normal_(0, 0.5)


@pytest.mark.parametrize("model_type,pre_ln", FAMILIES)
def test_copied_weights_equal_the_teachers_exactly(model_type, pre_ln):
    teacher = teacher_model(model_type, pre_ln)
    student = make_student(teacher, num_layers=2, init_layers=[2, 0])
    assert student.config.num_hidden_layers == 2 and teacher.config.num_hidden_layers == 3

    for prefix in ("feature_extractor.", "feature_projection.", "encoder.pos_conv_embed.",
                   "encoder.layer_norm."):
        theirs = params(teacher, prefix)
        assert theirs and params(student, prefix).keys() == theirs.keys()
        for key, value in params(student, prefix).items():
            assert torch.equal(value, theirs[key]), key
    for i, source in enumerate([2, 0]):
        theirs = params(teacher.encoder.layers[source])
        for key, value in params(student.encoder.layers[i]).items():
            if key in theirs:
                assert torch.equal(value, theirs[key]), (i, key)
    # Deep copies: the student owns its weights.
    teacher_ptrs = {p.data_ptr() for p in teacher.parameters()}
    assert not any(p.data_ptr() in teacher_ptrs for p in student.parameters())


def test_wavlm_relative_position_embedding_stays_with_layer_0():
    teacher = teacher_model("wavlm", pre_ln=False)
    student = make_student(teacher, num_layers=2, init_layers=[1, 2])
    assert torch.equal(student.encoder.layers[0].attention.rel_attn_embed.weight,
                       teacher.encoder.layers[0].attention.rel_attn_embed.weight)
    assert torch.equal(student.encoder.layers[0].attention.q_proj.weight,
                       teacher.encoder.layers[1].attention.q_proj.weight)


def test_paper_faithful_init_leaves_pos_conv_and_final_norm_random():
    teacher = teacher_model()
    with torch.no_grad():
        teacher.encoder.layer_norm.weight.fill_(0.5)
    faithful = make_student(teacher, 2, copy_pos_conv=False, copy_final_layer_norm=False)
    copied = make_student(teacher, 2)
    assert torch.equal(faithful.encoder.layer_norm.weight, torch.ones(32))
    assert torch.equal(copied.encoder.layer_norm.weight, teacher.encoder.layer_norm.weight)
    for key, value in params(faithful, "encoder.pos_conv_embed.").items():
        if value.numel() > 32:  # the conv weights, not its zero-initialised bias
            assert not torch.equal(value, params(teacher, "encoder.pos_conv_embed.")[key])
    assert torch.equal(faithful.encoder.layers[1].feed_forward.output_dense.weight,
                       teacher.encoder.layers[1].feed_forward.output_dense.weight)


def test_thin_cnn_changes_only_the_cnn():
    teacher = teacher_model()
    student = make_student(teacher, 2, thin_cnn_dim=8)
    assert student.config.conv_dim == [8] * 6 + [16]
    wav = torch.randn(1, 8000)
    assert student.feature_extractor(wav).shape[-1] == teacher.feature_extractor(wav).shape[-1]
    assert sum(p.numel() for p in student.feature_extractor.parameters()) < sum(
        p.numel() for p in teacher.feature_extractor.parameters()
    )
    for prefix in ("feature_projection.", "encoder.pos_conv_embed.", "encoder.layers.1."):
        for key, value in params(student, prefix).items():
            assert torch.equal(value, params(teacher, prefix)[key]), key


def test_init_layers_must_name_teacher_layers():
    with pytest.raises(ValueError, match="0..2"):
        make_student(teacher_model(), 2, init_layers=[0, 3])


@pytest.mark.parametrize("model_type,pre_ln", FAMILIES)
def test_kd_branch_is_hugging_faces_forward_whatever_the_adapters(model_type, pre_ln):
    student = make_student(teacher_model(model_type, pre_ln), 2)
    reference = SSLTeacher(copy.deepcopy(student))
    ssl = BranchedSSL(student).eval()
    randomise_adapters(ssl)
    wav, lengths = torch.randn(3, 8000), torch.tensor([8000, 6000, 4321])
    masked = ssl(wav, lengths, kd_branch=True)
    plain = ssl(wav, kd_branch=True)
    for ours, theirs in zip(masked.kd_hidden_states, reference(wav, lengths)):
        assert torch.allclose(ours[masked.frame_mask], theirs[masked.frame_mask], atol=1e-5)
    for ours, theirs in zip(plain.kd_hidden_states, reference(wav)):
        assert torch.allclose(ours, theirs, atol=1e-5)
    # ... while the FT branch does use the adapters.
    assert not torch.allclose(plain.hidden_states[-1], plain.kd_hidden_states[-1], atol=1e-3)


@pytest.mark.parametrize("model_type,pre_ln", FAMILIES)
def test_zero_initialised_adapters_make_ft_equal_kd(model_type, pre_ln):
    ssl = BranchedSSL(make_student(teacher_model(model_type, pre_ln), 2)).eval()
    out = ssl(torch.randn(2, 8000), kd_branch=True)
    assert len(out.hidden_states) == len(out.kd_hidden_states) == 3
    for ft, kd in zip(out.hidden_states, out.kd_hidden_states):
        assert ft.shape == (2, 24, 32)
        assert torch.equal(ft, kd)


def test_doubled_residual_adds_the_post_attention_residual_on_the_ft_branch():
    # Pre-LN layer: KD out = h + FFN(LN2(h)); quirk FT out = 2h + FFN(LN2(h)) + adapter(h)
    # where h, the post-attention residual, is what LN2 (final_layer_norm) reads.
    ssl = BranchedSSL(make_student(teacher_model(), 2), doubled_residual=True).eval()
    seen = []
    ssl.model.encoder.layers[0].final_layer_norm.register_forward_hook(
        lambda module, inputs, output: seen.append(inputs[0])
    )
    out = ssl(torch.randn(2, 8000), kd_branch=True)
    residual = seen[0][:2]  # KD rows; the FT rows share them in layer 0
    assert torch.allclose(out.hidden_states[1], out.kd_hidden_states[1] + residual, atol=1e-5)


def test_inference_runs_the_ft_branch_alone():
    ssl = BranchedSSL(make_student(teacher_model("wavlm"), 2)).eval()
    randomise_adapters(ssl)
    wav = torch.randn(2, 8000)
    both = ssl(wav, kd_branch=True)
    alone = ssl(wav)
    assert alone.kd_hidden_states is None
    for ft, inference in zip(both.hidden_states, alone.hidden_states):
        assert torch.allclose(ft, inference, atol=1e-5)


def test_without_adapters_the_kd_states_are_the_single_pass():
    ssl = BranchedSSL(make_student(teacher_model(), 2), adapters=False).eval()
    out = ssl(torch.randn(2, 8000), kd_branch=True)
    assert ssl.adapters is None
    assert out.kd_hidden_states is out.hidden_states
    assert out.hidden_states[0].shape[0] == 2
