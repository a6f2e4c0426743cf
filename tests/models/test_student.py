import copy
from itertools import pairwise

import numpy as np
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

    for prefix in (
        "feature_extractor.",
        "feature_projection.",
        "encoder.pos_conv_embed.",
        "encoder.layer_norm.",
    ):
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
    assert torch.equal(
        student.encoder.layers[0].attention.rel_attn_embed.weight,
        teacher.encoder.layers[0].attention.rel_attn_embed.weight,
    )
    assert torch.equal(
        student.encoder.layers[0].attention.q_proj.weight,
        teacher.encoder.layers[1].attention.q_proj.weight,
    )


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
    assert torch.equal(
        faithful.encoder.layers[1].feed_forward.output_dense.weight,
        teacher.encoder.layers[1].feed_forward.output_dense.weight,
    )


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
    for ours, theirs in zip(masked.kd_hidden_states, reference(wav, lengths), strict=True):
        assert torch.allclose(ours[masked.frame_mask], theirs[masked.frame_mask], atol=1e-5)
    for ours, theirs in zip(plain.kd_hidden_states, reference(wav), strict=True):
        assert torch.allclose(ours, theirs, atol=1e-5)
    # ... while the FT branch does use the adapters.
    assert not torch.allclose(plain.hidden_states[-1], plain.kd_hidden_states[-1], atol=1e-3)


@pytest.mark.parametrize("model_type,pre_ln", FAMILIES)
def test_zero_initialised_adapters_make_ft_equal_kd(model_type, pre_ln):
    ssl = BranchedSSL(make_student(teacher_model(model_type, pre_ln), 2)).eval()
    out = ssl(torch.randn(2, 8000), kd_branch=True)
    assert len(out.hidden_states) == len(out.kd_hidden_states) == 3
    for ft, kd in zip(out.hidden_states, out.kd_hidden_states, strict=True):
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
    for ft, inference in zip(both.hidden_states, alone.hidden_states, strict=True):
        assert torch.allclose(ft, inference, atol=1e-5)


def test_without_adapters_the_kd_states_are_the_single_pass():
    ssl = BranchedSSL(make_student(teacher_model(), 2), adapters=False).eval()
    out = ssl(torch.randn(2, 8000), kd_branch=True)
    assert ssl.adapters is None
    assert out.kd_hidden_states is out.hidden_states
    assert out.hidden_states[0].shape[0] == 2


# ---------------------------------------------------------------------------------------------
# The original code's training behaviours (ssl.spec_augment, layer_drop, doubled_front_end,
# adapter_init), each checked against what the original does, written out here.

# XLSR-53's config.json: mask_time_prob 0.075, mask_time_length 10 (mask_time_min_masks: Hugging
# Face's default 2); the real CNN strides give 99 frames for a 2 s window. No dropout, so the
# masks are the only randomness.
XLSR_MASKING = dict(
    mask_time_prob=0.075,
    mask_time_length=10,
    mask_time_min_masks=2,
    feat_proj_dropout=0.0,
    hidden_dropout=0.0,
    attention_dropout=0.0,
    activation_dropout=0.0,
    layerdrop=0.0,
)


def expected_masked_fraction(frames=99, span=10, prob=0.075, min_masks=2):
    """Hugging Face's _compute_mask_indices as the original ran it: max(int(prob * frames / span
    + u), min_masks) spans of ``span`` frames, u ~ U[0, 1), starts drawn without replacement
    from 0..frames - span; the expected share of frames they cover, by enumeration."""
    starts = range(frames - span + 1)
    total, count = 0.0, 0
    for u_spans in {max(int(prob * frames / span + u), min_masks) for u in (0.0, 0.999)}:
        assert u_spans == 2  # 0.74 + u < 2: always the 2 minimum spans at these settings
    for a in starts:
        for b in starts:
            if a != b:
                total += len(set(range(a, a + span)) | set(range(b, b + span)))
                count += 1
    return total / count / frames


def masked_frames(ssl, wav, kd_branch=True):
    """Per row of the stacked batch, which frames SpecAugment replaced: where the positional
    convolution's input differs from the feature projection's output."""
    seen = {}
    model = ssl.model
    hooks = [
        model.feature_projection.register_forward_hook(
            lambda m, i, out: seen.update(projected=out[0].clone())
        ),  # masked in place
        model.encoder.pos_conv_embed.register_forward_hook(
            lambda m, inputs, out: seen.update(pos_conv_input=inputs[0])
        ),
    ]
    try:
        ssl(wav, kd_branch=kd_branch)
    finally:
        for hook in hooks:
            hook.remove()
    projected, entering = seen["projected"], seen["pos_conv_input"]
    if projected.shape[0] != entering.shape[0]:
        projected = projected.repeat(entering.shape[0] // projected.shape[0], 1, 1)
    return (projected != entering).any(dim=-1)


def test_spec_augment_masks_19_percent_of_a_2s_window_independently_in_each_half():
    torch.manual_seed(0)
    np.random.seed(0)
    teacher = teacher_model(**XLSR_MASKING)
    ssl = BranchedSSL(make_student(teacher, 1), spec_augment=True, doubled_front_end=True).train()
    wav = 0.1 * torch.randn(64, 32000)
    with torch.no_grad():
        masked = masked_frames(ssl, wav)
    assert masked.shape == (128, 99)
    expected = expected_masked_fraction()
    assert 0.185 < expected < 0.195
    assert masked.float().mean().item() == pytest.approx(expected, abs=0.01)
    kd, ft = masked[:64], masked[64:]
    assert (kd != ft).any(dim=1).float().mean() > 0.9  # the two halves draw their own masks
    # Eval mode never masks.
    with torch.no_grad():
        assert not masked_frames(ssl.eval(), wav).any()


def test_without_spec_augment_nothing_is_masked_and_the_mask_embedding_is_gone():
    teacher = teacher_model(**XLSR_MASKING)
    ssl = BranchedSSL(make_student(teacher, 1)).train()
    with torch.no_grad():
        assert not masked_frames(ssl, 0.1 * torch.randn(8, 32000)).any()
    assert not hasattr(ssl.model, "masked_spec_embed")


def test_the_mask_embedding_is_copied_unless_asked_otherwise():
    teacher = teacher_model(**XLSR_MASKING)
    copied = make_student(teacher, 1)
    left = make_student(teacher, 1, copy_mask_embedding=False)
    assert torch.equal(copied.masked_spec_embed, teacher.masked_spec_embed)
    assert not torch.equal(left.masked_spec_embed, teacher.masked_spec_embed)


def test_layer_drop_skips_a_layer_for_both_halves_at_once():
    # Post-LN layers: a skipped layer's output is its input, on either branch.
    teacher = teacher_model(pre_ln=False, **{**XLSR_MASKING, "layerdrop": 0.5})
    ssl = BranchedSSL(make_student(teacher, 3), layer_drop=True).train()
    randomise_adapters(ssl)
    wav = 0.1 * torch.randn(2, 8000)
    skips = []
    torch.manual_seed(0)
    with torch.no_grad():
        for _ in range(30):
            out = ssl(wav, kd_branch=True)
            kd = [torch.equal(a, b) for a, b in pairwise(out.kd_hidden_states)]
            ft = [torch.equal(a, b) for a, b in pairwise(out.hidden_states)]
            assert kd == ft
            skips.append(kd)
    per_layer = np.mean(skips, axis=0)
    assert all(0.2 < share < 0.8 for share in per_layer), per_layer
    # Off, or in eval mode, every layer runs.
    for model in (BranchedSSL(make_student(teacher, 3)).train(), ssl.eval()):
        with torch.no_grad():
            out = model(wav, kd_branch=True)
        assert not any(torch.equal(a, b) for a, b in pairwise(out.hidden_states))


@pytest.mark.parametrize("doubled", [False, True])
def test_doubled_front_end_gives_each_half_its_own_dropout(doubled):
    teacher = teacher_model(**{**XLSR_MASKING, "feat_proj_dropout": 0.5})
    ssl = BranchedSSL(make_student(teacher, 1), doubled_front_end=doubled).train()
    with torch.no_grad():
        out = ssl(0.1 * torch.randn(2, 8000), kd_branch=True)
    same_input = torch.equal(out.kd_hidden_states[0], out.hidden_states[0])
    assert same_input != doubled


def test_original_adapter_init_is_normal_0_02_with_zero_bias():
    teacher = teacher_model(
        hidden_size=256, intermediate_size=64, num_attention_heads=4, initializer_range=0.02
    )
    torch.manual_seed(0)
    ssl = BranchedSSL(make_student(teacher, 2), adapter_dim=64, adapter_init="normal")
    for adapter in ssl.adapters:
        for linear in (adapter.down, adapter.up):
            weight = linear.weight.detach()
            assert weight.numel() == 256 * 64
            # 16384 draws: the mean within 5 standard errors, the std within 3%.
            assert abs(weight.mean().item()) < 5 * 0.02 / 128
            assert weight.std().item() == pytest.approx(0.02, rel=0.03)
            assert torch.equal(linear.bias, torch.zeros_like(linear.bias))
        assert torch.equal(adapter.norm.weight, torch.ones(256))
        assert torch.equal(adapter.norm.bias, torch.zeros(256))
    # So the FT branch does not start equal to the KD branch, unlike the default init.
    out = ssl.eval()(torch.randn(1, 8000), kd_branch=True)
    assert not torch.allclose(out.hidden_states[-1], out.kd_hidden_states[-1], atol=1e-4)


def test_num_kd_rows_sends_the_first_rows_through_the_kd_branch():
    ssl = BranchedSSL(make_student(teacher_model(), 2), doubled_residual=True).eval()
    randomise_adapters(ssl)
    plain = copy.deepcopy(ssl)
    plain.adapters, plain.doubled_residual = None, False  # the KD branch: no adapter at all
    wav = torch.randn(5, 8000)
    with torch.no_grad():
        mixed = ssl(wav, num_kd_rows=2).hidden_states[-1]
        kd, ft = plain(wav).hidden_states[-1], ssl(wav).hidden_states[-1]
    assert torch.allclose(mixed[:2], kd[:2], atol=1e-5)
    assert torch.allclose(mixed[2:], ft[2:], atol=1e-5)
    assert not torch.allclose(kd[2:], ft[2:], atol=1e-3)


@pytest.mark.parametrize("kernel,groups", [(5, 2), (4, 32), (16, 8)])
def test_cheaper_pos_conv_has_its_kernel_groups_and_receptive_field(kernel, groups):
    teacher = teacher_model()  # positional conv: kernel 16, 2 groups, 32 wide
    student = make_student(teacher, 2, pos_conv_kernel=kernel, pos_conv_groups=groups)
    conv = student.encoder.pos_conv_embed
    assert (
        student.config.num_conv_pos_embeddings,
        student.config.num_conv_pos_embedding_groups,
    ) == (kernel, groups)
    weights = sum(p.numel() for n, p in conv.named_parameters() if "bias" not in n)
    assert weights == 32 * 32 // groups * kernel + kernel  # weight norm: direction, tap gains
    # Frames in = frames out; output frame t reads frames t - k//2 .. t + (k - 1)//2 (an even
    # kernel's extra output frame is dropped), whichever groups.
    frames, t = 40, 20
    hidden = torch.randn(1, frames, 32)
    moved = hidden.clone()
    moved[0, t] += 1.0
    with torch.no_grad():
        changed = (conv(moved) - conv(hidden)).abs().sum(dim=-1)[0] > 0
    assert changed.shape == (frames,)
    assert changed.nonzero().flatten().tolist() == list(
        range(t - (kernel - 1) // 2, t + kernel // 2 + 1)
    )
    # Each group's outputs read its own inputs only.
    moved = hidden.clone()
    moved[0, t, : 32 // groups] += 1.0
    with torch.no_grad():
        touched = (conv(moved) - conv(hidden)).abs().sum(dim=1)[0] > 0
    assert touched.nonzero().flatten().tolist() == list(range(32 // groups))
    # The rest of the front end is still the teacher's.
    for prefix in ("feature_extractor.", "feature_projection.", "encoder.layers.1."):
        for key, value in params(student, prefix).items():
            assert torch.equal(value, params(teacher, prefix)[key]), key


def test_pos_conv_groups_must_divide_the_width():
    with pytest.raises(ValueError, match="ssl.pos_conv_groups=5 must divide .* 32"):
        make_student(teacher_model(), 2, pos_conv_groups=5)


def test_the_teachers_pos_conv_shape_is_still_copied():
    teacher = teacher_model()
    student = make_student(teacher, 2, pos_conv_kernel=16, pos_conv_groups=2)
    for key, value in params(student, "encoder.pos_conv_embed.").items():
        assert torch.equal(value, params(teacher, "encoder.pos_conv_embed.")[key]), key


def test_sliced_thin_cnn_starts_as_the_teachers_leading_channels():
    teacher = teacher_model(pre_ln=False)  # group-norm CNN: layer 0's norm is per channel
    student = make_student(teacher, 2, thin_cnn_dim=8, thin_cnn_init="sliced")
    wav = torch.randn(1, 8000)
    with torch.no_grad():
        theirs = teacher.feature_extractor.conv_layers[0](wav[:, None])
        ours = student.feature_extractor.conv_layers[0](wav[:, None])
    torch.testing.assert_close(ours, theirs[:, :8])  # exact: the first 8 filters, normalised
    teacher_w = teacher.feature_extractor.conv_layers[1].conv.weight
    student_w = student.feature_extractor.conv_layers[1].conv.weight
    assert student_w.shape == (8, 8, teacher_w.shape[2])
    torch.testing.assert_close(student_w, teacher_w[:8, :8] * 16 / 8)  # 16 inputs -> 8
    last = student.feature_extractor.conv_layers[-1].conv.weight
    assert last.shape[0] == 16  # the last layer keeps the teacher's width
    random = make_student(teacher, 2, thin_cnn_dim=8)
    assert not torch.equal(
        random.feature_extractor.conv_layers[0].conv.weight,
        teacher.feature_extractor.conv_layers[0].conv.weight[:8],
    )


@pytest.mark.parametrize("model_type,pre_ln", FAMILIES)
def test_front_end_state_is_hidden_state_0_without_the_layers(model_type, pre_ln):
    ssl = BranchedSSL(make_student(teacher_model(model_type, pre_ln), 2, thin_cnn_dim=8)).eval()
    wav, lengths = torch.randn(2, 16000), torch.tensor([16000, 12000])
    with torch.no_grad():
        full = ssl(wav, lengths, kd_branch=True).kd_hidden_states[0]
        alone = ssl.front_end_state(wav, lengths)
    assert torch.equal(alone, full)
    layers = ssl.model.encoder.layers
    called = []
    hooks = [layer.register_forward_hook(lambda *_: called.append(1)) for layer in layers]
    ssl.front_end_state(wav)
    assert not called
    for hook in hooks:
        hook.remove()


def test_front_end_parameters_are_the_cnn_projection_and_positional_convolution():
    ssl = BranchedSSL(make_student(teacher_model(), 2, thin_cnn_dim=8))
    trained = {id(p) for p in ssl.front_end_parameters()}
    prefixes = ("model.feature_extractor.", "model.feature_projection.", "model.encoder.pos_conv")
    expected = {id(p) for name, p in ssl.named_parameters() if name.startswith(prefixes)}
    assert trained == expected and len(ssl.front_end_parameters()) == len(expected)
    assert any(name.startswith("model.encoder.pos_conv") for name, _ in ssl.named_parameters())
