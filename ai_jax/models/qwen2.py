"""The Qwen 2 / 2.5 family: Llama's transformer with biases on the q, k and v projections,
tied or untied embeddings and a large RoPE base (1e6). From Hugging Face safetensors
(sharded or not) or a GGUF of architecture `qwen2` (whose q/k rows llama.cpp leaves as
Hugging Face has them: Qwen's RoPE is the rotate-half kind, so nothing is permuted).
"""

from __future__ import annotations

from typing import Any, Callable

from ai_jax.models import llama, registry
from ai_jax.models.config import ModelConfig


def _config_from_hf(hf: dict[str, Any], dtype: str = "float32") -> ModelConfig:
  if hf.get("use_sliding_window"):
    raise ValueError("config.json sets use_sliding_window=true; ai_jax's Qwen 2 attends to "
                     "every earlier token (as the released Qwen 2 / 2.5 models do). Set it "
                     "to false, or add the window to the family.")
  if hf.get("hidden_act", "silu") != "silu":
    raise ValueError(f"hidden_act={hf['hidden_act']!r} is not supported (Qwen 2 uses silu).")
  kwargs = llama.base_config_kwargs({"rope_theta": 1e6, **hf})
  return ModelConfig(family="qwen2", dtype=dtype, qkv_bias=True, **kwargs)


def _to_hf_config(config: ModelConfig) -> dict[str, Any]:
  return {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
          **llama.base_hf_config(config), "hidden_act": "silu", "use_sliding_window": False,
          "sliding_window": None, "max_window_layers": config.num_layers}


def _gguf_config(get: Callable, metadata: dict, shapes: dict) -> dict[str, Any]:
  return {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_act": "silu",
          "use_sliding_window": False, **llama.base_gguf_config(get, metadata, shapes)}


FAMILY = registry.register(registry.Family(
    name="qwen2",
    hf_model_types=("qwen2",),
    gguf_architectures=("qwen2",),
    config_from_hf=_config_from_hf,
    to_hf_config=_to_hf_config,
    hf_config_from_gguf=_gguf_config,
    hf_layer_names={**llama.PROJECTION_NAMES,
                    ("attn", "q_bias"): "self_attn.q_proj.bias",
                    ("attn", "k_bias"): "self_attn.k_proj.bias",
                    ("attn", "v_bias"): "self_attn.v_proj.bias",
                    ("attn_norm", "scale"): "input_layernorm.weight",
                    ("mlp_norm", "scale"): "post_attention_layernorm.weight"},
    gguf_block_names={**llama.GGUF_PROJECTION_NAMES, "attn_norm": "input_layernorm",
                      "ffn_norm": "post_attention_layernorm"},
    gguf_biases=("attn_q", "attn_k", "attn_v"),
))
