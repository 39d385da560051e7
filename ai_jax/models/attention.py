"""Grouped-query attention over the tokens given or over a KV cache, written once for every
family: optional q/k/v biases (qwen2), q/k RMSNorm (gemma3), sliding-window layers with
their own RoPE base (gemma), `query_pre_attn_scalar`, score soft-capping.

Which keys a query may read is decided by positions (`models/cache.py`): a key is allowed
when 0 <= its position <= the query's, and on a sliding layer when the query is fewer than
`sliding_window` positions after it (Hugging Face's `kv_idx > q_idx - sliding_window`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ai_jax.models import layers
from ai_jax.models.config import ModelConfig, rope_inv_freq

NEG_INF = -1e30


def allowed_keys(q_pos_BT, k_pos_BS, window: int | None, sliding) -> jax.Array:
  """[B, T, S] bool: which keys each query reads. `sliding` may be a traced bool (a layer
  of a scan over layers) or a Python one."""
  q = q_pos_BT[:, :, None]
  k = k_pos_BS[:, None, :]
  ok = (k >= 0) & (k <= q)
  if window is not None and sliding is not False:
    ok = ok & ((q - k < window) | ~jnp.asarray(sliding))
  return ok


def cache_scores(q_BTKGH, keys_BKHS):
  """q.k over the cache -> [B, K, G, T, S]. A one-token step is a multiply-reduce over the
  head dim: as a batched dot_general of [G, H] x [H, S] per (row, kv head), XLA:CPU either
  transposes the cache or runs a slow generic dot."""
  if q_BTKGH.shape[1] != 1:
    return jnp.einsum("btkgh,bkhs->bkgts", q_BTKGH, keys_BKHS,
                      preferred_element_type=jnp.float32)
  q_BKGH1 = q_BTKGH[:, 0, :, :, :, None].astype(jnp.float32)
  return jnp.sum(q_BKGH1 * keys_BKHS[:, :, None].astype(jnp.float32), axis=-2)[:, :, :, None]


def cache_values(probs_BKGTS, values_BKSH):
  """probs.v over the cache -> [B, T, K, G, H]; one-token steps as a multiply-reduce over
  slots, for the same reason as `cache_scores`."""
  if probs_BKGTS.shape[3] != 1:
    return jnp.einsum("bkgts,bksh->btkgh", probs_BKGTS, values_BKSH)
  probs_BKGS1 = probs_BKGTS[:, :, :, 0, :, None]
  out_BKGH = jnp.sum(probs_BKGS1 * values_BKSH[:, :, None], axis=-2)
  return out_BKGH[:, None]


def attend_with_prefix(q_BTKGH, scores_BKGTS, values_BKSH, prefix, q_pos_BT, scale, dt,
                       window: int | None, sliding, softcap_value):
  """Attention over a shared prompt prefix plus each row's own generated slots.

  Rows are grouped J per prompt (row = prompt * J + j). The prefix cache holds each prompt
  once ([P prompts, prefix slots]); its J samples read it through one batched matmul of
  J * G query rows instead of J copies of the cache. Every prefix slot precedes every
  generated slot, so the prefix needs no causal mask: only its padding and, on a sliding
  layer, the window.
  """
  prefix_k_PKHX, prefix_v_PKXH, prefix_pos_PX = prefix
  B, T, K, G, H = q_BTKGH.shape
  P, X = prefix_pos_PX.shape
  J = B // P
  # A prompt's J samples read its prefix as Q = J * G query heads per kv head.
  q_PTKQH = q_BTKGH.reshape(P, J, T, K, G, H).transpose(0, 2, 3, 1, 4, 5).reshape(
      P, T, K, J * G, H)
  pscores_PKQTX = layers.softcap(cache_scores(q_PTKQH, prefix_k_PKHX.astype(dt)) * scale,
                                 softcap_value)
  pscores_BKGTX = pscores_PKQTX.reshape(P, K, J, G, T, X).transpose(0, 2, 1, 3, 4, 5).reshape(
      B, K, G, T, X)
  real_BX = jnp.repeat(prefix_pos_PX >= 0, J, axis=0)
  allowed_BTX = jnp.broadcast_to(real_BX[:, None, :], (B, T, X))
  if window is not None and sliding is not False:
    near_BTX = q_pos_BT[:, :, None] - jnp.repeat(prefix_pos_PX, J, axis=0)[:, None, :] < window
    allowed_BTX = allowed_BTX & (near_BTX | ~jnp.asarray(sliding))
  pscores_BKGTX = jnp.where(allowed_BTX[:, None, None], pscores_BKGTX, NEG_INF)
  S = scores_BKGTS.shape[-1]
  # W = X + S: every slot a row reads, its prompt's prefix then its own.
  probs_BKGTW = jax.nn.softmax(jnp.concatenate([pscores_BKGTX, scores_BKGTS], -1),
                               axis=-1).astype(dt)
  pprobs_PKQTX = probs_BKGTW[..., :X].reshape(P, J, K, G, T, X).transpose(
      0, 2, 1, 3, 4, 5).reshape(P, K, J * G, T, X)
  pout_PTKQH = cache_values(pprobs_PKQTX, prefix_v_PKXH.astype(dt))
  pout_BTKGH = pout_PTKQH.reshape(P, T, K, J, G, H).transpose(0, 3, 1, 2, 4, 5).reshape(
      B, T, K, G, H)
  return pout_BTKGH + cache_values(probs_BKGTW[..., X:X + S], values_BKSH.astype(dt))


class Attention(nn.Module):
  """`(x, positions, key positions, layer cache, write_index, sliding, prefix) ->
  (out, layer cache)`; without a cache, causal attention within the given tokens."""
  config: ModelConfig

  @nn.compact
  def __call__(self, x_BTD, positions_BT, key_pos_BS, cache_k_BKHS, cache_v_BKSH,
               write_index, sliding=False, prefix=None):
    cfg = self.config
    dt = cfg.compute_dtype
    D, N, K, H = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    q_DNH = layers.param(self, "q_proj", (D, N, H), ("embed", "heads", "head_dim"))
    k_DKH = layers.param(self, "k_proj", (D, K, H), ("embed", "kv_heads", "head_dim"))
    v_DKH = layers.param(self, "v_proj", (D, K, H), ("embed", "kv_heads", "head_dim"))
    o_NHD = layers.param(self, "o_proj", (N, H, D), ("heads", "head_dim", "embed"))

    B, T = x_BTD.shape[:2]
    # 2-D matmuls over flattened tokens, as in MLP (no transposed gradient copies).
    x_UD = x_BTD.reshape(B * T, D)
    q_BTNH = (x_UD @ q_DNH.reshape(D, N * H).astype(dt)).reshape(B, T, N, H)
    k_BTKH = (x_UD @ k_DKH.reshape(D, K * H).astype(dt)).reshape(B, T, K, H)
    v_BTKH = (x_UD @ v_DKH.reshape(D, K * H).astype(dt)).reshape(B, T, K, H)
    if cfg.qkv_bias:
      zeros = nn.initializers.zeros
      q_BTNH = q_BTNH + layers.param(self, "q_bias", (N, H), ("heads", "head_dim"),
                                     zeros).astype(dt)
      k_BTKH = k_BTKH + layers.param(self, "k_bias", (K, H), ("kv_heads", "head_dim"),
                                     zeros).astype(dt)
      v_BTKH = v_BTKH + layers.param(self, "v_bias", (K, H), ("kv_heads", "head_dim"),
                                     zeros).astype(dt)
    if cfg.qk_norm:
      norm = lambda name: layers.RMSNorm(cfg.rms_norm_eps, cfg.norm_unit_offset,  # noqa: E731
                                         "head_dim", name=name)
      q_BTNH, k_BTKH = norm("q_norm")(q_BTNH), norm("k_norm")(k_BTKH)
    inv_freq_F = rope_inv_freq(cfg)
    if cfg.has_sliding_layers and sliding is not False:
      inv_freq_F = jnp.where(sliding, rope_inv_freq(cfg, sliding=True), inv_freq_F)
    q_BTNH = layers.apply_rope(q_BTNH, positions_BT, inv_freq_F)
    k_BTKH = layers.apply_rope(k_BTKH, positions_BT, inv_freq_F)

    scale = np.float32((cfg.query_pre_attn_scalar or H) ** -0.5)
    q_BTKGH = q_BTNH.reshape(B, T, K, N // K, H)
    if cache_k_BKHS is None:  # Plain forward: attend within the given tokens only.
      scores_BKGTS = jnp.einsum("btkgh,bskh->bkgts", q_BTKGH, k_BTKH,
                                preferred_element_type=jnp.float32) * scale
      keys_BKHS = values_BKSH = None
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
      scores_BKGTS = cache_scores(q_BTKGH, keys_BKHS.astype(dt)) * scale
    scores_BKGTS = layers.softcap(scores_BKGTS, cfg.attn_logit_softcap)
    window = cfg.sliding_window if cfg.has_sliding_layers else None
    allowed_BTS = allowed_keys(positions_BT, key_pos_BS, window, sliding)
    scores_BKGTS = jnp.where(allowed_BTS[:, None, None], scores_BKGTS, NEG_INF)
    if prefix is not None:
      out_BTKGH = attend_with_prefix(q_BTKGH, scores_BKGTS, values_BKSH, prefix,
                                     positions_BT, scale, dt, window, sliding,
                                     cfg.attn_logit_softcap)
    else:
      probs_BKGTS = jax.nn.softmax(scores_BKGTS, axis=-1).astype(dt)
      if cache_k_BKHS is None:
        out_BTKGH = jnp.einsum("bkgts,bskh->btkgh", probs_BKGTS, v_BTKH)
      else:
        out_BTKGH = cache_values(probs_BKGTS, values_BKSH.astype(dt))
    out_BTD = (out_BTKGH.reshape(B * T, N * H) @ o_NHD.reshape(N * H, D).astype(dt)
               ).reshape(B, T, D)
    return out_BTD, keys_BKHS, values_BKSH
