"""Flax (linen) port of the Llama family: RMSNorm, RoPE, grouped-query attention, SwiGLU.

Parameters are a plain pytree (linen), so sampling and training stay pure functions of
`params`. Layers are stacked along a leading `layers` axis and run with `nn.scan`: one
compiled layer body instead of `num_layers` copies keeps compile time low on small CPUs.

With a KV cache, a prefill (several tokens, stacked params) scans the layers too; a decode
step runs the same params (stacked, or split per layer by `unstack_layers`) in an unrolled
layer loop, so that each layer's cache is a separate buffer updated in place:
  k_BKHS: tuple with one [batch, kv head, head dim, slot] array per layer;
  v_BKSH: tuple with one [batch, kv head, slot, head dim] array per layer (each in the
          layout its attention matmul reads, so no step transposes a cache);
  mask_BS: which cache slots hold real (non-padding) tokens.
Optionally a shared prefix (best-of-k sampling): prefix_k_PKHX, prefix_v_PKXH (per layer)
and prefix_mask_PX hold P prompts once; row r of the cache belongs to prompt r // (B / P)
and attends to that prompt's prefix before its own slots (see `_attend_with_prefix`).
Queries attend to slots that are real and not in their future (by slot index), so
left-padded prompts, prefill and one-token decode steps all share one code path.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  rms_norm_eps: float = 1e-5
  rope_theta: float = 10000.0
  # None, "linear" or "llama3" (Hugging Face `rope_scaling` semantics).
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

  @property
  def compute_dtype(self):
    return jnp.dtype(self.dtype)

  def replace(self, **kwargs) -> "LlamaConfig":
    return dataclasses.replace(self, **kwargs)

  @classmethod
  def from_hf_config(cls, hf: dict[str, Any], dtype: str = "float32") -> "LlamaConfig":
    """Builds a config from a Hugging Face `config.json` dict (Llama naming)."""
    model_type = hf.get("model_type", "llama")
    if model_type not in ("llama", "mistral", "smollm", "smollm2"):
      raise ValueError(
          f"config.json has model_type={model_type!r}; ai_jax's Llama port handles "
          "model_type 'llama' (and Llama-compatible checkpoints). Convert the checkpoint "
          "or add a port under ai_jax/models/.")
    if hf.get("attention_bias") or hf.get("mlp_bias"):
      raise ValueError("config.json sets attention_bias/mlp_bias; the Llama port has no "
                       "bias terms yet.")
    if hf.get("hidden_act", "silu") != "silu":
      raise ValueError(f"hidden_act={hf['hidden_act']!r} is not supported (Llama uses silu).")
    heads = int(hf["num_attention_heads"])
    hidden = int(hf["hidden_size"])
    scaling = hf.get("rope_scaling") or None
    if scaling is None:  # transformers >= 5 writes the scaling into rope_parameters.
      rope_parameters = hf.get("rope_parameters") or {}
      if rope_parameters.get("rope_type", rope_parameters.get("type")) not in (None, "default"):
        scaling = rope_parameters
    kwargs: dict[str, Any] = {}
    if scaling:
      kind = scaling.get("rope_type", scaling.get("type"))
      if kind in (None, "default"):
        pass
      elif kind == "linear":
        kwargs.update(rope_scaling_type="linear", rope_scaling_factor=float(scaling["factor"]))
      elif kind == "llama3":
        kwargs.update(
            rope_scaling_type="llama3",
            rope_scaling_factor=float(scaling["factor"]),
            rope_low_freq_factor=float(scaling.get("low_freq_factor", 1.0)),
            rope_high_freq_factor=float(scaling.get("high_freq_factor", 4.0)),
            rope_original_max_position=int(
                scaling.get("original_max_position_embeddings", 8192)))
      else:
        raise ValueError(f"rope_scaling type {kind!r} is not supported; supported: "
                         "default, linear, llama3.")
    rope_theta = hf.get("rope_theta")
    if rope_theta is None:  # transformers v5 moved theta into rope_parameters.
      rope_theta = (hf.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    eos = hf.get("eos_token_id")
    if isinstance(eos, (list, tuple)):
      eos = eos[0] if eos else None
    return cls(
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
        dtype=dtype,
        bos_token_id=hf.get("bos_token_id"),
        eos_token_id=eos,
        **kwargs)

  def to_hf_config(self) -> dict[str, Any]:
    """The `config.json` that transformers' LlamaForCausalLM loads."""
    scaling = None
    if self.rope_scaling_type == "linear":
      scaling = {"rope_type": "linear", "factor": self.rope_scaling_factor}
    elif self.rope_scaling_type == "llama3":
      scaling = {"rope_type": "llama3", "factor": self.rope_scaling_factor,
                 "low_freq_factor": self.rope_low_freq_factor,
                 "high_freq_factor": self.rope_high_freq_factor,
                 "original_max_position_embeddings": self.rope_original_max_position}
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": self.vocab_size,
        "hidden_size": self.hidden_size,
        "intermediate_size": self.intermediate_size,
        "num_hidden_layers": self.num_layers,
        "num_attention_heads": self.num_heads,
        "num_key_value_heads": self.num_kv_heads,
        "head_dim": self.head_dim,
        "rms_norm_eps": self.rms_norm_eps,
        "rope_theta": self.rope_theta,
        "rope_scaling": scaling,
        "max_position_embeddings": self.max_position_embeddings,
        "tie_word_embeddings": self.tie_word_embeddings,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": self.bos_token_id,
        "eos_token_id": self.eos_token_id,
        "torch_dtype": "float32",
    }


def rope_inv_freq(config: LlamaConfig) -> np.ndarray:
  """Inverse frequencies, including linear / llama3 scaling (as transformers computes them)."""
  hd = config.head_dim
  inv_freq = 1.0 / (config.rope_theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
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


def apply_rope(x_BTNH: Array, positions_BT: Array, inv_freq_F: np.ndarray) -> Array:
  """Rotary embedding in Hugging Face's rotate-half layout (GGUF weights are un-permuted)."""
  angles_BTF = positions_BT[..., None].astype(jnp.float32) * inv_freq_F
  cos = jnp.cos(angles_BTF)[:, :, None, :]
  sin = jnp.sin(angles_BTF)[:, :, None, :]
  x = x_BTNH.astype(jnp.float32)
  x1, x2 = jnp.split(x, 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x_BTNH.dtype)


def _param(module: nn.Module, name: str, shape, axes, init=None):
  init = init or nn.initializers.normal(stddev=0.02)
  return module.param(name, nn.with_logical_partitioning(init, axes), shape, jnp.float32)


class RMSNorm(nn.Module):
  eps: float

  @nn.compact
  def __call__(self, x):
    scale_D = _param(self, "scale", (x.shape[-1],), ("embed",), nn.initializers.ones)
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return (scale_D.astype(jnp.float32) * normed).astype(x.dtype)


def _attend_with_prefix(q_BTKGH, scores_BKGTS, values_BKSH, prefix, scale, dt):
  """Attention over a shared prompt prefix plus each row's own generated slots.

  Rows are grouped J per prompt (row = prompt * J + j). The prefix cache holds each prompt
  once ([P prompts, prefix slots]); its J samples read it through one batched matmul of
  J * G query rows instead of J copies of the cache. Every prefix slot precedes every
  generated slot, so the prefix needs no causal mask, only its padding mask.
  """
  prefix_k_PKHX, prefix_v_PKXH, prefix_mask_PX = prefix
  B, T, K, G, H = q_BTKGH.shape
  P, X = prefix_mask_PX.shape
  J = B // P
  # A prompt's J samples read its prefix as Q = J * G query heads per kv head.
  q_PTKQH = q_BTKGH.reshape(P, J, T, K, G, H).transpose(0, 2, 3, 1, 4, 5).reshape(
      P, T, K, J * G, H)
  pscores_PKQTX = _cache_scores(q_PTKQH, prefix_k_PKHX.astype(dt)) * scale
  pscores_PKQTX = jnp.where(prefix_mask_PX[:, None, None, None, :], pscores_PKQTX, -1e30)
  pscores_BKGTX = pscores_PKQTX.reshape(P, K, J, G, T, X).transpose(0, 2, 1, 3, 4, 5).reshape(
      B, K, G, T, X)
  S = scores_BKGTS.shape[-1]
  # W = X + S: every slot a row reads, its prompt's prefix then its own.
  probs_BKGTW = jax.nn.softmax(jnp.concatenate([pscores_BKGTX, scores_BKGTS], -1),
                               axis=-1).astype(dt)
  pprobs_PKQTX = probs_BKGTW[..., :X].reshape(P, J, K, G, T, X).transpose(
      0, 2, 1, 3, 4, 5).reshape(P, K, J * G, T, X)
  pout_PTKQH = _cache_values(pprobs_PKQTX, prefix_v_PKXH.astype(dt))
  pout_BTKGH = pout_PTKQH.reshape(P, T, K, J, G, H).transpose(0, 3, 1, 2, 4, 5).reshape(
      B, T, K, G, H)
  return pout_BTKGH + _cache_values(probs_BKGTW[..., X:X + S], values_BKSH.astype(dt))


def _cache_scores(q_BTKGH, keys_BKHS):
  """q.k over the cache -> [B, K, G, T, S]. A one-token step is a multiply-reduce over the
  head dim: as a batched dot_general of [G, H] x [H, S] per (row, kv head), XLA:CPU either
  transposes the cache or runs a slow generic dot."""
  if q_BTKGH.shape[1] != 1:
    return jnp.einsum("btkgh,bkhs->bkgts", q_BTKGH, keys_BKHS,
                      preferred_element_type=jnp.float32)
  q_BKGH1 = q_BTKGH[:, 0, :, :, :, None].astype(jnp.float32)
  return jnp.sum(q_BKGH1 * keys_BKHS[:, :, None].astype(jnp.float32), axis=-2)[:, :, :, None]


def _cache_values(probs_BKGTS, values_BKSH):
  """probs.v over the cache -> [B, T, K, G, H]; one-token steps as a multiply-reduce over
  slots, for the same reason as `_cache_scores`."""
  if probs_BKGTS.shape[3] != 1:
    return jnp.einsum("bkgts,bksh->btkgh", probs_BKGTS, values_BKSH)
  probs_BKGS1 = probs_BKGTS[:, :, :, 0, :, None]
  out_BKGH = jnp.sum(probs_BKGS1 * values_BKSH[:, :, None], axis=-2)
  return out_BKGH[:, None]


class Attention(nn.Module):
  config: LlamaConfig

  @nn.compact
  def __call__(self, x_BTD, positions_BT, cache_k_BKHS, cache_v_BKSH, key_mask_BS,
               query_slots_T, write_index, prefix=None):
    cfg = self.config
    dt = cfg.compute_dtype
    D, N, K, H = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    q_DNH = _param(self, "q_proj", (D, N, H), ("embed", "heads", "head_dim"))
    k_DKH = _param(self, "k_proj", (D, K, H), ("embed", "kv_heads", "head_dim"))
    v_DKH = _param(self, "v_proj", (D, K, H), ("embed", "kv_heads", "head_dim"))
    o_NHD = _param(self, "o_proj", (N, H, D), ("heads", "head_dim", "embed"))

    inv_freq = rope_inv_freq(cfg)
    B, T = x_BTD.shape[:2]
    # 2-D matmuls over flattened tokens, as in MLP (no transposed gradient copies).
    x_UD = x_BTD.reshape(B * T, D)
    q_BTNH = apply_rope((x_UD @ q_DNH.reshape(D, N * H).astype(dt)).reshape(B, T, N, H),
                        positions_BT, inv_freq)
    k_BTKH = apply_rope((x_UD @ k_DKH.reshape(D, K * H).astype(dt)).reshape(B, T, K, H),
                        positions_BT, inv_freq)
    v_BTKH = (x_UD @ v_DKH.reshape(D, K * H).astype(dt)).reshape(B, T, K, H)

    scale = np.float32(1.0 / np.sqrt(H))
    q_BTKGH = q_BTNH.reshape(B, T, K, N // K, H)
    if cache_k_BKHS is None:  # Plain forward: attend within the given tokens only.
      scores_BKGTS = jnp.einsum("btkgh,bskh->bkgts", q_BTKGH, k_BTKH,
                                preferred_element_type=jnp.float32) * scale
      S = T
    else:
      # The cache keeps keys as [B, K, H, S] and values as [B, K, S, H], the layouts the
      # two attention matmuls read: stored as [B, S, K, H], XLA:CPU transposed every
      # layer's whole key cache at every decode step (30% of the step, SmolLM2 at N=192).
      keys_BKHS = jax.lax.dynamic_update_slice_in_dim(
          cache_k_BKHS, k_BTKH.transpose(0, 2, 3, 1).astype(cache_k_BKHS.dtype),
          write_index, axis=3)
      values_BKSH = jax.lax.dynamic_update_slice_in_dim(
          cache_v_BKSH, v_BTKH.transpose(0, 2, 1, 3).astype(cache_v_BKSH.dtype),
          write_index, axis=2)
      scores_BKGTS = _cache_scores(q_BTKGH, keys_BKHS.astype(dt)) * scale
      S = keys_BKHS.shape[-1]
    causal_TS = jnp.arange(S)[None, :] <= query_slots_T[:, None]
    allowed_BTS = causal_TS[None] & key_mask_BS[:, None, :]
    scores_BKGTS = jnp.where(allowed_BTS[:, None, None], scores_BKGTS, -1e30)
    if prefix is not None:
      out_BTKGH = _attend_with_prefix(q_BTKGH, scores_BKGTS, values_BKSH, prefix, scale, dt)
    else:
      probs_BKGTS = jax.nn.softmax(scores_BKGTS, axis=-1).astype(dt)
      if cache_k_BKHS is None:
        out_BTKGH = jnp.einsum("bkgts,bskh->btkgh", probs_BKGTS, v_BTKH)
      else:
        out_BTKGH = _cache_values(probs_BKGTS, values_BKSH.astype(dt))
    out_BTD = (out_BTKGH.reshape(B * T, N * H) @ o_NHD.reshape(N * H, D).astype(dt)
               ).reshape(B, T, D)
    if cache_k_BKHS is None:
      return out_BTD, None, None
    return out_BTD, keys_BKHS, values_BKSH


class MLP(nn.Module):
  config: LlamaConfig

  @nn.compact
  def __call__(self, x_BTD):
    cfg = self.config
    dt = cfg.compute_dtype
    D, F = cfg.hidden_size, cfg.intermediate_size
    gate_DF = _param(self, "gate_proj", (D, F), ("embed", "mlp"))
    up_DF = _param(self, "up_proj", (D, F), ("embed", "mlp"))
    down_FD = _param(self, "down_proj", (F, D), ("mlp", "embed"))
    # 2-D matmuls over flattened tokens: with 3-D einsums the weight gradients contract
    # over (b, t) and XLA:CPU writes transposed copies of the [B*T, F] activation
    # gradients (~16% of a SmolLM2 training step, benchmarks/RESULTS.md).
    B, T, _ = x_BTD.shape
    x_UD = x_BTD.reshape(B * T, D)
    gate_UF = x_UD @ gate_DF.astype(dt)
    up_UF = x_UD @ up_DF.astype(dt)
    return ((jax.nn.silu(gate_UF) * up_UF) @ down_FD.astype(dt)).reshape(B, T, D)


class Block(nn.Module):
  """One decoder layer: `(x, cache_k, cache_v) -> (x, cache_k, cache_v)`."""
  config: LlamaConfig

  @nn.compact
  def __call__(self, x_BTD, positions_BT, cache_k_BKHS, cache_v_BKSH, key_mask_BS,
               query_slots_T, write_index, prefix=None):
    eps = self.config.rms_norm_eps
    attn_BTD, cache_k_BKHS, cache_v_BKSH = Attention(self.config, name="attn")(
        RMSNorm(eps, name="attn_norm")(x_BTD), positions_BT, cache_k_BKHS, cache_v_BKSH,
        key_mask_BS, query_slots_T, write_index, prefix)
    x_BTD = x_BTD + attn_BTD
    x_BTD = x_BTD + MLP(self.config, name="mlp")(RMSNorm(eps, name="mlp_norm")(x_BTD))
    return x_BTD, cache_k_BKHS, cache_v_BKSH


class _ScanBlock(Block):
  """Block in `nn.scan` form (carry = activations) for the cache-free path."""

  def __call__(self, x_BTD, positions_BT, key_mask_BS, query_slots_T):
    x_BTD, _, _ = super().__call__(x_BTD, positions_BT, None, None, key_mask_BS,
                                   query_slots_T, 0)
    return x_BTD, None


class _ScanCacheBlock(Block):
  """Block in `nn.scan` form over stacked caches (carry = activations), for a prefill."""

  def __call__(self, x_BTD, cache_k_BKHS, cache_v_BKSH, positions_BT, key_mask_BS,
               query_slots_T, write_index):
    x_BTD, k_BKHS, v_BKSH = super().__call__(x_BTD, positions_BT, cache_k_BKHS, cache_v_BKSH,
                                             key_mask_BS, query_slots_T, write_index)
    return x_BTD, (k_BKHS, v_BKSH)


def init_cache(config: LlamaConfig, batch: int, max_len: int, dtype=None) -> dict[str, Any]:
  """An empty KV cache with `max_len` slots per sequence: one buffer per layer."""
  dtype = dtype or config.compute_dtype
  k_shape = (batch, config.num_kv_heads, config.head_dim, max_len)
  v_shape = (batch, config.num_kv_heads, max_len, config.head_dim)
  return {"k_BKHS": tuple(jnp.zeros(k_shape, dtype) for _ in range(config.num_layers)),
          "v_BKSH": tuple(jnp.zeros(v_shape, dtype) for _ in range(config.num_layers)),
          "mask_BS": jnp.zeros((batch, max_len), bool)}


class Llama(nn.Module):
  """`__call__(tokens_BT, positions_BT, input_mask_BT, cache, write_index) -> (logits, cache)`.

  Without a cache, attention is causal over the T given tokens (training, scoring). With a
  cache, the T tokens are written at slots [write_index, write_index + T) and attend to
  every earlier real slot. `last_only` returns logits for the final position only, which
  is all a sampler needs after prefill (the full [B, T, V] logits dominate prefill cost).
  """
  config: LlamaConfig

  @nn.compact
  def __call__(self, tokens_BT, positions_BT, input_mask_BT=None, cache=None,
               write_index=0, last_only: bool = False):
    cfg = self.config
    dt = cfg.compute_dtype
    B, T = tokens_BT.shape
    if input_mask_BT is None:
      input_mask_BT = jnp.ones((B, T), bool)
    embed_VD = _param(self, "embed", (cfg.vocab_size, cfg.hidden_size), ("vocab", "embed"))
    x_BTD = jnp.take(embed_VD, tokens_BT, axis=0).astype(dt)

    scan = functools.partial(
        nn.scan, variable_axes={"params": 0}, split_rngs={"params": True},
        length=cfg.num_layers, metadata_params={nn.PARTITION_NAME: "layers"})
    new_cache = None
    if cache is None or self.is_initializing():
      blocks = scan(_ScanBlock, in_axes=(nn.broadcast,) * 3)(cfg, name="layers")
      x_BTD, _ = blocks(x_BTD, positions_BT, input_mask_BT, jnp.arange(T))
    else:
      key_mask_BS = jax.lax.dynamic_update_slice_in_dim(
          cache["mask_BS"], input_mask_BT, write_index, axis=1)
      query_slots_T = write_index + jnp.arange(T)
      layers = self.variables["params"]["layers"]
      if T > 1 and not isinstance(layers, tuple) and "prefix_k_PKHX" not in cache:
        # A prefill (once per batch) runs the layers as a scan over the stacked params and
        # caches, as training does: unrolled, it was a third of a decode program's compile
        # time (SmolLM2 at -O0, k=1: 12.5 s -> 8.4 s) for no speed (benchmarks/RESULTS.md).
        blocks = scan(_ScanCacheBlock, in_axes=(0, 0) + (nn.broadcast,) * 4)(cfg, name="layers")
        x_BTD, (k_LBKHS, v_LBKSH) = blocks(
            x_BTD, jnp.stack(cache["k_BKHS"]), jnp.stack(cache["v_BKSH"]), positions_BT,
            key_mask_BS, query_slots_T, write_index)
        new_k = [k_LBKHS[i] for i in range(cfg.num_layers)]
        new_v = [v_LBKSH[i] for i in range(cfg.num_layers)]
      else:
        # A decode step runs the layers unrolled: each layer's cache is then its own
        # buffer, updated in place inside the decode loop (a scan carrying all layers'
        # caches copies them at every step).
        new_k, new_v = [], []
        for i in range(cfg.num_layers):
          # Stacked params (as trained and stored) or a tuple of per-layer params
          # (`unstack_layers`, done once before a decode loop so no step slices weights).
          layer_params = layers[i] if isinstance(layers, tuple) else jax.tree.map(
              lambda w: w[i], layers)
          prefix = None
          if "prefix_k_PKHX" in cache:
            prefix = (cache["prefix_k_PKHX"][i], cache["prefix_v_PKXH"][i],
                      cache["prefix_mask_PX"])
          x_BTD, k_i, v_i = Block(cfg).apply(
              {"params": layer_params}, x_BTD, positions_BT, cache["k_BKHS"][i],
              cache["v_BKSH"][i], key_mask_BS, query_slots_T, write_index, prefix)
          new_k.append(k_i)
          new_v.append(v_i)
      new_cache = {**cache, "k_BKHS": tuple(new_k), "v_BKSH": tuple(new_v),
                   "mask_BS": key_mask_BS}

    if last_only:
      x_BTD = x_BTD[:, -1:]
    x_BTD = RMSNorm(cfg.rms_norm_eps, name="final_norm")(x_BTD)
    if cfg.tie_word_embeddings:
      logits_BTV = jnp.einsum("btd,vd->btv", x_BTD, embed_VD.astype(dt),
                              preferred_element_type=jnp.float32)
    else:
      head_DV = _param(self, "lm_head", (cfg.hidden_size, cfg.vocab_size), ("embed", "vocab"))
      logits_BTV = jnp.einsum("btd,dv->btv", x_BTD, head_DV.astype(dt),
                              preferred_element_type=jnp.float32)
    return logits_BTV, new_cache


def unstack_layers(params):
  """Params with the stacked `layers` split into a tuple of per-layer trees, which the cache
  path reads directly. Inside a decode loop, slicing the stacked weights each step made
  XLA:CPU copy some of them (about 10% of a SmolLM2 step)."""
  layers = params["layers"]
  if isinstance(layers, tuple):
    return params
  num_layers = jax.tree.leaves(layers)[0].shape[0]
  return {**params, "layers": tuple(jax.tree.map(lambda w: w[i], layers)
                                    for i in range(num_layers))}


def init_params(config: LlamaConfig, seed: int = 0):
  """Random parameters (unboxed), for tests and benchmarks of configs without weights."""
  model = Llama(config)
  tokens = jnp.zeros((1, 4), jnp.int32)
  variables = jax.jit(model.init)(jax.random.PRNGKey(seed), tokens, jnp.zeros((1, 4), jnp.int32))
  return nn.meta.unbox(variables["params"])


@functools.lru_cache(maxsize=16)
def logical_axes(config: LlamaConfig):
  """Pytree of logical axis-name tuples, same structure as the params (cached per config:
  tracing the model's init costs ~0.3 s and every load, placement and trainer asks)."""
  model = Llama(config)
  abstract = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32),
                            jnp.zeros((1, 4), jnp.int32))
  return jax.tree.map(lambda p: tuple(p.names), abstract["params"],
                      is_leaf=lambda x: isinstance(x, nn.Partitioned))
