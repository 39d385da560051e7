"""`ModelConfig`: one frozen dataclass for every decoder family ai_jax runs.

The families (llama, qwen2, gemma3; `models/registry.py`) are configs of one transformer
(`models/transformer.py`), as gemma's model variants are: a family is the set of switches
below plus its Hugging Face / GGUF naming. `family` names the registry entry that reads and
writes `config.json` for it; every other field is architecture.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

LAYER_FULL = "full_attention"        # Hugging Face's `layer_types` values
LAYER_SLIDING = "sliding_attention"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  family: str = "llama"
  rms_norm_eps: float = 1e-5
  rope_theta: float = 10000.0
  # None, "linear" or "llama3" (Hugging Face `rope_scaling` semantics); global layers only.
  rope_scaling_type: str | None = None
  rope_scaling_factor: float = 1.0
  rope_low_freq_factor: float = 1.0
  rope_high_freq_factor: float = 4.0
  rope_original_max_position: int = 8192
  max_position_embeddings: int = 2048
  tie_word_embeddings: bool = True
  # Activation/matmul dtype; parameters keep their own dtype and are cast per matmul.
  dtype: str = "float32"
  bos_token_id: int | None = None
  eos_token_id: int | None = None
  # --- switches the families differ by (defaults: Llama) ---
  qkv_bias: bool = False               # qwen2: biases on the q, k and v projections
  mlp_activation: str = "silu"         # "silu" (SwiGLU) | "gelu_tanh" (GeGLU, gemma)
  norm_unit_offset: bool = False       # gemma: RMSNorm scales by (1 + w), w initialised 0
  qk_norm: bool = False                # gemma3: RMSNorm over head_dim on q and k
  sandwich_norms: bool = False         # gemma: norms after attention and MLP too
  scale_embeddings: bool = False       # gemma: embeddings times sqrt(hidden_size)
  query_pre_attn_scalar: float | None = None   # scores scaled by its -1/2 (None: head_dim)
  attn_logit_softcap: float | None = None      # cap * tanh(scores / cap) (gemma 2 style)
  final_logit_softcap: float | None = None     # cap * tanh(logits / cap)
  sliding_window: int | None = None    # keys within this many positions, on sliding layers
  layer_types: tuple[str, ...] | None = None   # per layer LAYER_FULL | LAYER_SLIDING
  rope_local_theta: float | None = None        # RoPE base of the sliding layers

  def __post_init__(self):
    if self.mlp_activation not in ("silu", "gelu_tanh"):
      raise ValueError(f"mlp_activation={self.mlp_activation!r}; supported: silu, gelu_tanh")
    if self.layer_types is not None:
      types = tuple(self.layer_types)
      object.__setattr__(self, "layer_types", types)  # a list from JSON -> tuple (hashable)
      if len(types) != self.num_layers or set(types) - {LAYER_FULL, LAYER_SLIDING}:
        raise ValueError(f"layer_types must list {self.num_layers} entries of "
                         f"{LAYER_FULL!r}/{LAYER_SLIDING!r}, got {types}")
      if LAYER_SLIDING in types and not self.sliding_window:
        raise ValueError("layer_types has sliding layers but sliding_window is not set")

  @property
  def compute_dtype(self):
    return jnp.dtype(self.dtype)

  @property
  def sliding_layers(self) -> tuple[bool, ...]:
    """Per layer: does it attend within `sliding_window` only (with the local RoPE base)?"""
    if self.layer_types is None:
      return (False,) * self.num_layers
    return tuple(t == LAYER_SLIDING for t in self.layer_types)

  @property
  def has_sliding_layers(self) -> bool:
    return any(self.sliding_layers)

  def replace(self, **kwargs) -> "ModelConfig":
    return dataclasses.replace(self, **kwargs)


def rope_inv_freq(config: ModelConfig, sliding: bool = False) -> np.ndarray:
  """Inverse frequencies as transformers computes them: the sliding layers' own base
  unscaled, the others' base with linear / llama3 scaling."""
  hd = config.head_dim
  theta = config.rope_local_theta if sliding and config.rope_local_theta else config.rope_theta
  inv_freq = 1.0 / (theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
  if sliding:
    return inv_freq.astype(np.float32)
  if config.rope_scaling_type == "linear":
    inv_freq = inv_freq / config.rope_scaling_factor
  elif config.rope_scaling_type == "llama3":
    factor = config.rope_scaling_factor
    old_len = config.rope_original_max_position
    low_wavelen = old_len / config.rope_low_freq_factor
    high_wavelen = old_len / config.rope_high_freq_factor
    wavelen = 2 * np.pi / inv_freq
    scaled = np.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - config.rope_low_freq_factor) / (
        config.rope_high_freq_factor - config.rope_low_freq_factor)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    inv_freq = np.where(is_medium, smoothed, scaled)
  return inv_freq.astype(np.float32)


def rope_scaling_from_hf(scaling: dict | None) -> dict[str, Any]:
  """ModelConfig fields for a Hugging Face `rope_scaling` / `rope_parameters` dict."""
  if not scaling:
    return {}
  kind = scaling.get("rope_type", scaling.get("type"))
  if kind in (None, "default"):
    return {}
  if kind == "linear":
    return dict(rope_scaling_type="linear", rope_scaling_factor=float(scaling["factor"]))
  if kind == "llama3":
    return dict(
        rope_scaling_type="llama3", rope_scaling_factor=float(scaling["factor"]),
        rope_low_freq_factor=float(scaling.get("low_freq_factor", 1.0)),
        rope_high_freq_factor=float(scaling.get("high_freq_factor", 4.0)),
        rope_original_max_position=int(scaling.get("original_max_position_embeddings", 8192)))
  raise ValueError(f"rope_scaling type {kind!r} is not supported; supported: default, "
                   "linear, llama3.")


def rope_scaling_to_hf(config: ModelConfig) -> dict | None:
  if config.rope_scaling_type == "linear":
    return {"rope_type": "linear", "factor": config.rope_scaling_factor}
  if config.rope_scaling_type == "llama3":
    return {"rope_type": "llama3", "factor": config.rope_scaling_factor,
            "low_freq_factor": config.rope_low_freq_factor,
            "high_freq_factor": config.rope_high_freq_factor,
            "original_max_position_embeddings": config.rope_original_max_position}
  return None
