"""The Llama family (SmolLM2, Llama 2/3, Mistral without sliding window): RMSNorm, RoPE,
grouped-query attention, SwiGLU; the transformer's defaults. Its Hugging Face and GGUF
readers are the base the other families extend (`base_config_kwargs`, `base_hf_config`,
`base_gguf_config`).
"""

from __future__ import annotations

from typing import Any, Callable

from ai_jax.models import registry
from ai_jax.models.config import ModelConfig, rope_scaling_from_hf, rope_scaling_to_hf

_REQUIRED = object()

# Per-layer params -> HF names shared by the families that keep Llama's module names.
PROJECTION_NAMES = {
    ("attn", "q_proj"): "self_attn.q_proj.weight",
    ("attn", "k_proj"): "self_attn.k_proj.weight",
    ("attn", "v_proj"): "self_attn.v_proj.weight",
    ("attn", "o_proj"): "self_attn.o_proj.weight",
    ("mlp", "gate_proj"): "mlp.gate_proj.weight",
    ("mlp", "up_proj"): "mlp.up_proj.weight",
    ("mlp", "down_proj"): "mlp.down_proj.weight",
}
GGUF_PROJECTION_NAMES = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def base_config_kwargs(hf: dict[str, Any]) -> dict[str, Any]:
  """The ModelConfig fields every family reads the same way from a config.json."""
  heads = int(hf["num_attention_heads"])
  hidden = int(hf["hidden_size"])
  rope_parameters = hf.get("rope_parameters") or {}
  scaling = hf.get("rope_scaling") or None
  if scaling is None and rope_parameters.get("rope_type", rope_parameters.get("type")) not in (
      None, "default"):  # transformers >= 5 writes the scaling into rope_parameters.
    scaling = rope_parameters
  rope_theta = hf.get("rope_theta")
  if rope_theta is None:  # transformers v5 moved theta into rope_parameters.
    rope_theta = rope_parameters.get("rope_theta", 10000.0)
  eos = hf.get("eos_token_id")
  if isinstance(eos, (list, tuple)):
    eos = eos[0] if eos else None
  return dict(
      vocab_size=int(hf["vocab_size"]),
      hidden_size=hidden,
      intermediate_size=int(hf["intermediate_size"]),
      num_layers=int(hf["num_hidden_layers"]),
      num_heads=heads,
      num_kv_heads=int(hf.get("num_key_value_heads") or heads),
      head_dim=int(hf.get("head_dim") or hidden // heads),
      rms_norm_eps=float(hf.get("rms_norm_eps", 1e-5)),
      rope_theta=float(rope_theta),
      max_position_embeddings=int(hf.get("max_position_embeddings", 2048)),
      tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
      bos_token_id=hf.get("bos_token_id"),
      eos_token_id=eos,
      **rope_scaling_from_hf(scaling))


def base_hf_config(config: ModelConfig) -> dict[str, Any]:
  """The config.json keys every family writes the same way."""
  return {
      "vocab_size": config.vocab_size,
      "hidden_size": config.hidden_size,
      "intermediate_size": config.intermediate_size,
      "num_hidden_layers": config.num_layers,
      "num_attention_heads": config.num_heads,
      "num_key_value_heads": config.num_kv_heads,
      "head_dim": config.head_dim,
      "rms_norm_eps": config.rms_norm_eps,
      "rope_theta": config.rope_theta,
      "rope_scaling": rope_scaling_to_hf(config),
      "max_position_embeddings": config.max_position_embeddings,
      "tie_word_embeddings": config.tie_word_embeddings,
      "bos_token_id": config.bos_token_id,
      "eos_token_id": config.eos_token_id,
      "torch_dtype": "float32",
  }


def base_gguf_config(get: Callable, metadata: dict, shapes: dict) -> dict[str, Any]:
  """config.json keys from the llama.cpp keys every architecture shares. `get(key)` reads
  "<arch>.<key>" (an error if required and absent)."""
  hidden, n_heads = int(get("embedding_length")), int(get("attention.head_count"))
  vocab = get("vocab_size", None)
  if vocab is None and "tokenizer.ggml.tokens" in metadata:
    vocab = len(metadata["tokenizer.ggml.tokens"])
  if vocab is None and "token_embd.weight" in shapes:
    vocab = shapes["token_embd.weight"][0]
  if vocab is None:
    raise ValueError("GGUF metadata has neither '<arch>.vocab_size' nor a token list")
  head_dim = get("attention.key_length", None) or get("rope.dimension_count", None)
  scaling_type = get("rope.scaling.type", "none")
  if scaling_type == "none":
    rope_scaling = None
  elif scaling_type == "linear":
    rope_scaling = {"rope_type": "linear", "factor": float(get("rope.scaling.factor"))}
  else:
    raise ValueError(f"RoPE scaling type {scaling_type!r} is not supported (only 'linear')")
  return {
      "vocab_size": int(vocab),
      "hidden_size": hidden,
      "intermediate_size": int(get("feed_forward_length")),
      "num_hidden_layers": int(get("block_count")),
      "num_attention_heads": n_heads,
      "num_key_value_heads": int(get("attention.head_count_kv", n_heads)),
      "head_dim": int(head_dim or hidden // n_heads),
      "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon")),
      "rope_theta": float(get("rope.freq_base", 10000.0)),
      "rope_scaling": rope_scaling,
      "max_position_embeddings": int(get("context_length")),
      "tie_word_embeddings": bool(shapes) and "output.weight" not in shapes,
      "bos_token_id": metadata.get("tokenizer.ggml.bos_token_id"),
      "eos_token_id": metadata.get("tokenizer.ggml.eos_token_id"),
      "pad_token_id": metadata.get("tokenizer.ggml.padding_token_id"),
      "torch_dtype": "float32",
  }


def _config_from_hf(hf: dict[str, Any], dtype: str = "float32") -> ModelConfig:
  if hf.get("attention_bias") or hf.get("mlp_bias"):
    raise ValueError("config.json sets attention_bias/mlp_bias; the Llama family has no "
                     "bias terms (a Qwen 2 checkpoint should say model_type 'qwen2').")
  if hf.get("hidden_act", "silu") != "silu":
    raise ValueError(f"hidden_act={hf['hidden_act']!r} is not supported (Llama uses silu).")
  if hf.get("sliding_window") and hf.get("model_type") == "mistral":
    raise ValueError("config.json sets sliding_window (Mistral's windowed attention); the "
                     "Llama family attends to every earlier token. Set it to null if the "
                     "window exceeds every context you run.")
  return ModelConfig(family="llama", dtype=dtype, **base_config_kwargs(hf))


def _to_hf_config(config: ModelConfig) -> dict[str, Any]:
  return {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
          **base_hf_config(config), "hidden_act": "silu", "attention_bias": False,
          "mlp_bias": False}


def _gguf_config(get: Callable, metadata: dict, shapes: dict) -> dict[str, Any]:
  # Biases are read (the state dict is plain Hugging Face) and refused by _config_from_hf.
  return {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_act": "silu",
          **base_gguf_config(get, metadata, shapes),
          "attention_bias": any(n.endswith(".attn_q.bias") for n in shapes),
          "mlp_bias": False}


FAMILY = registry.register(registry.Family(
    name="llama",
    hf_model_types=("llama", "mistral", "smollm", "smollm2"),
    gguf_architectures=("llama",),
    config_from_hf=_config_from_hf,
    to_hf_config=_to_hf_config,
    hf_config_from_gguf=_gguf_config,
    hf_layer_names={**PROJECTION_NAMES,
                    ("attn_norm", "scale"): "input_layernorm.weight",
                    ("mlp_norm", "scale"): "post_attention_layernorm.weight"},
    gguf_block_names={**GGUF_PROJECTION_NAMES, "attn_norm": "input_layernorm",
                      "ffn_norm": "post_attention_layernorm"},
    gguf_biases=tuple(GGUF_PROJECTION_NAMES),
    gguf_permute_qk=True,
))
