import dataclasses
import importlib
import pkgutil
import typing

import pytest

import oskdft
from oskdft.config import (
    CHOICES,
    NO_KD,
    DataConfig,
    OptimConfig,
    SystemConfig,
    apply_overrides,
    config_digest,
    load_config,
    load_data_config,
    save_config,
)
from oskdft.utils.errors import InputError
from oskdft.utils.registry import Registry


def write(path, text):
    path.write_text(text)
    return path


def test_unknown_key_names_file_line_and_known_keys(tmp_path):
    conf = write(tmp_path / "sys.yaml", "kd:\n  loss: none\nsv:\n  margn: 0.3\n")
    with pytest.raises(InputError) as err:
        load_config(conf)
    message = str(err.value)
    assert f"{conf}:4" in message and "sv.margn" in message and "margin" in message


def test_unknown_section_is_an_error(tmp_path):
    conf = write(tmp_path / "sys.yaml", "optimiser:\n  epochs: 3\n")
    with pytest.raises(InputError, match=r"sys.yaml:1: unknown config key 'optimiser'"):
        load_config(conf)


def test_wrong_type_is_an_error(tmp_path):
    conf = write(tmp_path / "sys.yaml", "optim:\n  epochs: ten\n")
    with pytest.raises(InputError, match=r"sys.yaml:2: optim.epochs must be int"):
        load_config(conf)


def test_unknown_teacher_mode_is_an_error_at_load(tmp_path):
    conf = write(tmp_path / "sys.yaml", "teacher:\n  path: t\n  mode: cachd\n")
    with pytest.raises(
        InputError,
        match=r"sys.yaml:3: teacher.mode must be one of cached, "
        r"online, got 'cachd'",
    ):
        load_config(conf)
    with pytest.raises(InputError, match=r"--override: teacher.mode must be one of"):
        apply_overrides(SystemConfig(), ["teacher.mode=onlin"])


@pytest.mark.parametrize(
    "section, key, value, problem",
    [
        ("augment", "prob", "1.5", "must be a probability in [0, 1]"),
        ("augment", "noise_snr", "[15, 0]", "must be [low, high]"),
        ("augment", "clip_level", "[0.5, 1.2]", "must end at 1 or below"),
        ("augment", "babble_speakers", "[0, 3]", "must start at 1 or above"),
        ("augment", "choices", "{rir: -1}", "weights must be numbers >= 0"),
        ("optim", "epochs", "0", "must be at least 1"),
        ("optim", "grad_clip", "0", "must be positive"),
        ("eval", "num_crops", "0", "must be at least 1"),
        ("sv", "scale", "-30", "must be positive"),
    ],
)
def test_a_value_out_of_range_is_an_error_at_load(tmp_path, section, key, value, problem):
    conf = write(tmp_path / "sys.yaml", f"description: x\n{section}:\n  {key}: {value}\n")
    with pytest.raises(InputError) as err:
        load_config(conf)
    assert str(err.value).startswith(f"{conf}:3: {section}.{key} {problem}, got ")
    with pytest.raises(InputError, match=rf"--override: {section}.{key} "):
        apply_overrides(SystemConfig(), [f"{section}.{key}={value}"])


def test_optional_values_may_be_null_and_data_limits_apply_to_data_yaml(tmp_path):
    conf = write(tmp_path / "sys.yaml", "optim:\n  grad_clip: null\neval:\n  lda_dim: null\n")
    assert load_config(conf).optim.grad_clip is None
    data = write(tmp_path / "data.yaml", "window_seconds: 2.0\nsample_rate: 8000\n")
    with pytest.raises(
        InputError,
        match=r"data.yaml:2: sample_rate must be 16000: stage 0 "
        r"converts all audio to it, got 8000",
    ):
        load_data_config(data)


def test_base_inheritance_merges_key_by_key(tmp_path):
    write(tmp_path / "base.yaml", "optim:\n  epochs: 7\n  batch_size: 16\nkd:\n  loss: mse_last\n")
    conf = write(tmp_path / "child.yaml", "base: base.yaml\noptim:\n  epochs: 3\n")
    cfg = load_config(conf)
    assert (cfg.optim.epochs, cfg.optim.batch_size, cfg.kd.loss) == (3, 16, "mse_last")


def test_digest_follows_the_base_chain_and_ignores_comments_and_layout(tmp_path):
    (tmp_path / "common").mkdir()
    root = write(tmp_path / "common" / "root.yaml", "optim:\n  epochs: 7\n")
    write(tmp_path / "middle.yaml", "base: common/root.yaml\n")
    top = write(tmp_path / "top.yaml", "base: middle.yaml\nsv:\n  margin: 0.3\n")
    digest = config_digest(load_config(top))
    flat = write(tmp_path / "flat.yaml", "# one file\nsv: {margin: 0.3}\noptim: {epochs: 7}\n")
    assert config_digest(load_config(flat)) == digest
    write(root, "optim:\n  epochs: 8\n")
    assert config_digest(load_config(top)) != digest
    write(root, "base: ../top.yaml\n")
    with pytest.raises(InputError, match="loops back"):
        load_config(top)


def test_teacher_system_is_the_exp_dir_holding_the_teacher(tmp_path):
    exp = tmp_path / "exp"
    teacher = exp / "teacher_ft" / "final" / "ssl"
    assert SystemConfig().teacher_system(exp) is None
    cfg = apply_overrides(SystemConfig(), [f"teacher.path={teacher}"])
    assert cfg.teacher_system(exp) == "teacher_ft"
    elsewhere = apply_overrides(SystemConfig(), [f"teacher.path={tmp_path / 'models' / 'xlsr'}"])
    assert elsewhere.teacher_system(exp) is None
    assert (
        apply_overrides(SystemConfig(), ["teacher.path=some-org/ssl-base"]).teacher_system(exp)
        is None
    )


def test_error_in_base_names_the_base_file(tmp_path):
    write(tmp_path / "base.yaml", "optim:\n  epoch: 7\n")
    conf = write(tmp_path / "child.yaml", "base: base.yaml\n")
    with pytest.raises(InputError, match=r"base.yaml:2: unknown config key 'optim.epoch'"):
        load_config(conf)


def test_overrides_are_typed_and_checked():
    cfg = apply_overrides(
        SystemConfig(), ["optim.epochs=3", "kd.loss=none", "ssl.init_layers=[0, 2]"]
    )
    assert (cfg.optim.epochs, cfg.kd.loss, cfg.ssl.init_layers) == (3, "none", [0, 2])
    with pytest.raises(InputError, match="unknown key 'optim.lr'"):
        apply_overrides(SystemConfig(), ["optim.lr=0.1"])
    with pytest.raises(InputError, match="key.sub=value"):
        apply_overrides(SystemConfig(), ["optim.epochs"])
    with pytest.raises(InputError, match="must be float"):
        apply_overrides(SystemConfig(), ["sv.margin=big"])


def test_save_and_load_round_trip(tmp_path):
    cfg = apply_overrides(SystemConfig(), ["optim.epochs=2", "data.window_seconds=3.0"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_data_config_alone(tmp_path):
    conf = write(tmp_path / "data.yaml", "window_seconds: 3\nvalid_speakers: 4\n")
    cfg = load_data_config(conf)
    assert cfg == DataConfig(window_seconds=3.0, valid_speakers=4)


def test_a_system_needs_a_teacher_when_it_copies_fine_tunes_or_distils_one(tmp_path):
    scratch = apply_overrides(SystemConfig(), ["ssl.source=scratch", "kd.loss=none"])
    scratch.check_teacher("sys.yaml")
    for overrides in (
        ["ssl.source=student", "kd.loss=none"],
        ["ssl.source=teacher", "kd.loss=none"],
        ["ssl.source=scratch", "kd.loss=mse_last"],
    ):
        with pytest.raises(InputError, match=r"^sys.yaml: .*teacher.path is not set"):
            apply_overrides(SystemConfig(), overrides).check_teacher("sys.yaml")
    apply_overrides(SystemConfig(), ["teacher.path=t"]).check_teacher("sys.yaml")


def _choice_keys():
    """(section, dotted key inside it, allowed names) of every CHOICES entry of SystemConfig."""
    default = SystemConfig()
    sections = {
        type(getattr(default, f.name)): f.name
        for f in dataclasses.fields(default)
        if dataclasses.is_dataclass(getattr(default, f.name))
    }
    return [
        (sections[cls], key, allowed)
        for cls, keys in CHOICES.items()
        for key, allowed in keys.items()
    ]


# The keys the issue names: each must stay checked.
ENUMERATED = {
    "kd.loss",
    "kd.schedule",
    "optim.amp",
    "sv.class_weights",
    "backend.input",
    "ssl.source",
    "ssl.arch.model_type",
    "teacher.mode",
    "teacher.cache_storage",
    "augment.choices",
    "eval.backends",
    "eval.deploy_backend",
}
# String fields whose value is free (a path, a sentence): every other one has CHOICES.
FREE_TEXT = {"description", "teacher.path"}


def test_every_enumerated_key_has_choices():
    assert ENUMERATED <= {f"{section}.{key}" for section, key, _ in _choice_keys()}


def test_every_string_field_is_free_text_or_has_choices():
    """A new option with fixed names must get a CHOICES entry (or be declared free text)."""
    checked = {f"{section}.{key.partition('.')[0]}" for section, key, _ in _choice_keys()}

    def string_fields(cls, prefix):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            if dataclasses.is_dataclass(hint):
                yield from string_fields(hint, f"{prefix}{f.name}.")
            elif str in (hint, *typing.get_args(hint)) or hint == typing.List[str]:
                yield f"{prefix}{f.name}"

    unchecked = set(string_fields(SystemConfig, "")) - checked - FREE_TEXT
    assert not unchecked, f"add these to oskdft.config.CHOICES (or FREE_TEXT here): {unchecked}"


def _typo_yaml(section, key, allowed):
    """A YAML whose line 4 holds a typo of one of ``allowed`` for ``section.key``, the typo,
    and the override that sets the same typo."""
    typo = allowed[-1] + "x"
    field_name, _, inner = key.partition(".")
    if inner:  # a key of a mapping field
        text = f"{section}:\n  {field_name}:\n    {inner}: {typo}\n"
        return text, typo, f"{section}.{field_name}={{{inner}: {typo}}}", 4
    default = getattr(getattr(SystemConfig(), section), field_name)
    if isinstance(default, dict):
        text = f"{section}:\n  {field_name}:\n    {allowed[0]}: 1.0\n    {typo}: 1.0\n"
        return text, typo, f"{section}.{field_name}={{{typo}: 1.0}}", 5
    if isinstance(default, list):
        text = f"{section}:\n  {field_name}:\n  - {allowed[0]}\n  - {typo}\n"
        return text, typo, f"{section}.{field_name}=[{allowed[0]}, {typo}]", 3
    return f"{section}:\n  {field_name}: {typo}\n", typo, f"{section}.{field_name}={typo}", 3


@pytest.mark.parametrize(
    "section, key, allowed", _choice_keys(), ids=[f"{s}.{k}" for s, k, _ in _choice_keys()]
)
def test_a_typo_in_an_enumerated_key_is_refused_at_load(tmp_path, section, key, allowed):
    text, typo, override, line = _typo_yaml(section, key, allowed)
    conf = write(tmp_path / "sys.yaml", "description: x\n" + text)
    with pytest.raises(InputError) as err:
        load_config(conf)
    message = str(err.value)
    assert message.startswith(f"{conf}:{line}: {section}.") and f"got {typo!r}" in message
    assert f"must be one of {', '.join(allowed)}" in message
    with pytest.raises(InputError) as err:
        apply_overrides(SystemConfig(), [override])
    assert str(err.value).startswith("--override: ") and f"got {typo!r}" in str(err.value)
    for name in allowed:  # and every allowed name loads
        good = text.replace(typo, name)
        assert load_config(write(tmp_path / "good.yaml", "description: x\n" + good))


def test_every_name_the_config_allows_is_implemented():
    """Registries built from CHOICES take no other name; here, none lacks one either (kd.loss
    none is the absence of a KD loss, not a registered one)."""
    registries = []
    for module in pkgutil.walk_packages(oskdft.__path__, "oskdft."):
        for value in vars(importlib.import_module(module.name)).values():
            if isinstance(value, Registry) and value.allowed is not None:
                registries.append(value)
    assert {r.kind for r in registries} >= {
        "kd.loss",
        "kd.schedule",
        "ssl.source",
        "backend.input",
        "sv.class_weights",
    }
    for registry in registries:
        assert set(registry.allowed) - set(registry.names()) <= {NO_KD}, registry.kind
    from oskdft.training.trainer import AMP_DTYPES

    assert sorted(AMP_DTYPES) == sorted(CHOICES[OptimConfig]["amp"])
