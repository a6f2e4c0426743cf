"""Tiny random-weight SSL shapes shared by the model, loss and CLI tests."""

from typing import Any, Dict

from oskdft.config import SystemConfig

# (model_type, pre-LN layers): base-style post-LN with a group-norm CNN, large-style pre-LN
# with a layer-norm CNN.
FAMILIES = [(t, pre_ln) for t in ("wav2vec2", "hubert", "wavlm") for pre_ln in (False, True)]
LAYER_NORM_FAMILIES = [(t, pre_ln) for t, pre_ln in FAMILIES if pre_ln]


def tiny_arch(model_type: str = "wav2vec2", pre_ln: bool = True, **fields) -> Dict[str, Any]:
    """A 3-layer, 32-wide encoder with the real CNN strides (50 frames per second)."""
    arch = {
        "model_type": model_type,
        "hidden_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "conv_dim": [16] * 7,
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 2,
        "do_stable_layer_norm": pre_ln,
        "feat_extract_norm": "layer" if pre_ln else "group",
    }
    if model_type == "wavlm":
        arch.update(num_buckets=32, max_bucket_distance=64)
    arch.update(fields)
    return arch


def tiny_system_config(**sections: Dict[str, Any]) -> SystemConfig:
    """A SystemConfig with a 2-layer student and a small ECAPA; ``sections`` update fields,
    e.g. ``ssl={"doubled_residual": True}``."""
    cfg = SystemConfig()
    cfg.ssl.num_layers = 2
    cfg.ssl.adapter_dim = 8
    cfg.backend.channels = 16
    cfg.backend.embed_dim = 8
    for section, values in sections.items():
        for key, value in values.items():
            setattr(getattr(cfg, section), key, value)
    return cfg
