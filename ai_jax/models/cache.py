"""The KV cache every family shares: a typed pytree that knows its own logical axes.

  k_BKHS: tuple with one [batch, kv head, head dim, slot] array per layer;
  v_BKSH: tuple with one [batch, kv head, slot, head dim] array per layer (each in the
          layout its attention matmul reads, so no step transposes a cache);
  positions_BS: the position of the token in each slot, -1 where the slot is empty or
          holds padding. Attention allows a key when 0 <= its position <= the query's
          (and, on sliding layers, within the window), so left-padded prompts, a prefill,
          one-token steps and a shared prefix all use one rule.
  prefix: optionally a prompt cache shared by several rows (best-of-k sampling): P prompts
          once, row r of the cache belongs to prompt r // (B / P) and reads that prompt's
          slots before its own (`attention.attend_with_prefix`).

One buffer per layer (not one stacked array): a decode step updates each layer's cache in
place; a scan carrying all layers' caches copies them at every step.

Sliding-window layers keep a full-length cache and mask the keys outside the window (the
choice the model-families issue allowed): simpler, and no cost while prompt plus answer fit
in the window (Gemma 3's is 512 tokens); past it, a local layer reads and stores
S slots instead of `window`.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from ai_jax.models.config import ModelConfig

K_AXES = ("batch", "kv_heads", "head_dim", "cache_seq")
V_AXES = ("batch", "kv_heads", "cache_seq", "head_dim")
POS_AXES = ("batch", "cache_seq")


@flax.struct.dataclass
class PrefixCache:
  k_PKHX: tuple
  v_PKXH: tuple
  positions_PX: jax.Array

  def logical_axes(self) -> "PrefixCache":
    n = len(self.k_PKHX)
    return PrefixCache(k_PKHX=(K_AXES,) * n, v_PKXH=(V_AXES,) * n, positions_PX=POS_AXES)


@flax.struct.dataclass
class KVCache:
  k_BKHS: tuple
  v_BKSH: tuple
  positions_BS: jax.Array
  prefix: PrefixCache | None = None

  @property
  def num_slots(self) -> int:
    return self.positions_BS.shape[1]

  def logical_axes(self) -> "KVCache":
    """Same structure, each array replaced by its logical axis names (sharding/mesh.py
    turns them into shardings)."""
    n = len(self.k_BKHS)
    return KVCache(k_BKHS=(K_AXES,) * n, v_BKSH=(V_AXES,) * n, positions_BS=POS_AXES,
                   prefix=None if self.prefix is None else self.prefix.logical_axes())

  def as_prefix(self) -> PrefixCache:
    """This (prompt) cache as the shared prefix of several rows per prompt."""
    return PrefixCache(k_PKHX=self.k_BKHS, v_PKXH=self.v_BKSH, positions_PX=self.positions_BS)


def init_cache(config: ModelConfig, batch: int, max_len: int, dtype=None,
               prefix: PrefixCache | None = None) -> KVCache:
  """An empty cache with `max_len` slots per row: one buffer per layer."""
  dtype = dtype or config.compute_dtype
  k_shape = (batch, config.num_kv_heads, config.head_dim, max_len)
  v_shape = (batch, config.num_kv_heads, max_len, config.head_dim)
  return KVCache(k_BKHS=tuple(jnp.zeros(k_shape, dtype) for _ in range(config.num_layers)),
                 v_BKSH=tuple(jnp.zeros(v_shape, dtype) for _ in range(config.num_layers)),
                 positions_BS=jnp.full((batch, max_len), -1, jnp.int32), prefix=prefix)


def is_cache(x: Any) -> bool:
  return isinstance(x, KVCache)
