"""Hugging Face Llama state dicts <-> ai_jax params pytrees.

HF stores linear weights as [out_features, in_features] per layer; ai_jax stores kernels
as [in, out] with heads split out ([D, N, H] for q) and stacks layers on a leading axis
(the model scans over layers). These two functions are the only place that knows both.
"""

from __future__ import annotations

import numpy as np

from ai_jax.models.llama import LlamaConfig
from ai_jax.weights.errors import WeightsError

_LAYER = "model.layers.{i}."


def _take(state_dict: dict, name: str, shape: tuple) -> np.ndarray:
  if name not in state_dict:
    raise WeightsError(f"checkpoint has no tensor {name!r} (expected shape {shape}); is it a "
                       "Llama-family checkpoint with the same config?")
  w = np.asarray(state_dict[name])
  if w.shape != tuple(shape):
    raise WeightsError(f"tensor {name!r} has shape {w.shape}, config expects {tuple(shape)}")
  return w


def hf_to_params(state_dict: dict, config: LlamaConfig, dtype=np.float32) -> dict:
  """Builds the ai_jax params pytree (numpy arrays) from an HF-named Llama state dict."""
  D, F = config.hidden_size, config.intermediate_size
  N, K, H, V = config.num_heads, config.num_kv_heads, config.head_dim, config.vocab_size

  def per_layer(suffix, shape, transform):
    return np.stack([transform(_take(state_dict, _LAYER.format(i=i) + suffix, shape))
                     for i in range(config.num_layers)]).astype(dtype, copy=False)

  params = {
      "embed": _take(state_dict, "model.embed_tokens.weight", (V, D)).astype(dtype),
      "final_norm": {"scale": _take(state_dict, "model.norm.weight", (D,)).astype(dtype)},
      "layers": {
          "attn_norm": {"scale": per_layer("input_layernorm.weight", (D,), lambda w: w)},
          "mlp_norm": {"scale": per_layer("post_attention_layernorm.weight", (D,),
                                          lambda w: w)},
          "attn": {
              "q_proj": per_layer("self_attn.q_proj.weight", (N * H, D),
                                  lambda w: w.T.reshape(D, N, H)),
              "k_proj": per_layer("self_attn.k_proj.weight", (K * H, D),
                                  lambda w: w.T.reshape(D, K, H)),
              "v_proj": per_layer("self_attn.v_proj.weight", (K * H, D),
                                  lambda w: w.T.reshape(D, K, H)),
              "o_proj": per_layer("self_attn.o_proj.weight", (D, N * H),
                                  lambda w: w.T.reshape(N, H, D)),
          },
          "mlp": {
              "gate_proj": per_layer("mlp.gate_proj.weight", (F, D), lambda w: w.T),
              "up_proj": per_layer("mlp.up_proj.weight", (F, D), lambda w: w.T),
              "down_proj": per_layer("mlp.down_proj.weight", (D, F), lambda w: w.T),
          },
      },
  }
  if not config.tie_word_embeddings:
    params["lm_head"] = _take(state_dict, "lm_head.weight", (V, D)).T.astype(dtype)
  return params


def params_to_hf(params: dict, config: LlamaConfig, dtype=np.float32) -> dict:
  """Inverse of `hf_to_params`: HF-named [out, in] numpy arrays, one entry per layer."""
  D, N, K, H = config.hidden_size, config.num_heads, config.num_kv_heads, config.head_dim
  to_np = lambda x: np.asarray(x, dtype=np.float32).astype(dtype)
  layers = params["layers"]
  out = {
      "model.embed_tokens.weight": to_np(params["embed"]),
      "model.norm.weight": to_np(params["final_norm"]["scale"]),
  }
  for i in range(config.num_layers):
    pre = _LAYER.format(i=i)
    attn, mlp = layers["attn"], layers["mlp"]
    out[pre + "input_layernorm.weight"] = to_np(layers["attn_norm"]["scale"][i])
    out[pre + "post_attention_layernorm.weight"] = to_np(layers["mlp_norm"]["scale"][i])
    out[pre + "self_attn.q_proj.weight"] = to_np(attn["q_proj"][i]).reshape(D, N * H).T
    out[pre + "self_attn.k_proj.weight"] = to_np(attn["k_proj"][i]).reshape(D, K * H).T
    out[pre + "self_attn.v_proj.weight"] = to_np(attn["v_proj"][i]).reshape(D, K * H).T
    out[pre + "self_attn.o_proj.weight"] = to_np(attn["o_proj"][i]).reshape(N * H, D).T
    out[pre + "mlp.gate_proj.weight"] = to_np(mlp["gate_proj"][i]).T
    out[pre + "mlp.up_proj.weight"] = to_np(mlp["up_proj"][i]).T
    out[pre + "mlp.down_proj.weight"] = to_np(mlp["down_proj"][i]).T
  if not config.tie_word_embeddings:
    out["lm_head.weight"] = to_np(params["lm_head"]).T
  # safetensors wants contiguous buffers; transposes above are views.
  return {k: np.ascontiguousarray(v) for k, v in out.items()}
