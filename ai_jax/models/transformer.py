"""The one decoder transformer every family is a config of (llama, qwen2, gemma3).

Parameters are a plain pytree (linen), so sampling and training stay pure functions of
`params`. Layers are stacked along a leading `layers` axis and run with `nn.scan`: one
compiled layer body instead of `num_layers` copies keeps compile time low on small CPUs.
A family with sliding-window layers scans a per-layer flag beside the params.

With a KV cache (`models/cache.py`), a prefill (several tokens, stacked params) scans the
layers too; a decode step runs the same params (stacked, or split per layer by
`unstack_layers`) in an unrolled layer loop, so that each layer's cache is a separate
buffer updated in place.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ai_jax.models import layers
from ai_jax.models.attention import Attention
from ai_jax.models.cache import KVCache
from ai_jax.models.config import ModelConfig


def _norm(cfg: ModelConfig, name: str) -> layers.RMSNorm:
  return layers.RMSNorm(cfg.rms_norm_eps, cfg.norm_unit_offset, name=name)


class Block(nn.Module):
  """One decoder layer: `(x, cache_k, cache_v) -> (x, cache_k, cache_v)`; pre-norms, and
  with `sandwich_norms` (gemma) a norm on each branch's output before the residual add."""
  config: ModelConfig

  @nn.compact
  def __call__(self, x_BTD, positions_BT, key_pos_BS, cache_k_BKHS, cache_v_BKSH,
               write_index, sliding=False, prefix=None):
    cfg = self.config
    attn_BTD, cache_k_BKHS, cache_v_BKSH = Attention(cfg, name="attn")(
        _norm(cfg, "attn_norm")(x_BTD), positions_BT, key_pos_BS, cache_k_BKHS, cache_v_BKSH,
        write_index, sliding, prefix)
    if cfg.sandwich_norms:
      attn_BTD = _norm(cfg, "post_attn_norm")(attn_BTD)
    x_BTD = x_BTD + attn_BTD
    mlp_BTD = layers.MLP(cfg, name="mlp")(_norm(cfg, "mlp_norm")(x_BTD))
    if cfg.sandwich_norms:
      mlp_BTD = _norm(cfg, "post_mlp_norm")(mlp_BTD)
    return x_BTD + mlp_BTD, cache_k_BKHS, cache_v_BKSH


class _ScanBlock(Block):
  """Block in `nn.scan` form (carry = activations) for the cache-free path."""

  def __call__(self, x_BTD, sliding, positions_BT, key_pos_BS):
    x_BTD, _, _ = super().__call__(x_BTD, positions_BT, key_pos_BS, None, None, 0, sliding)
    return x_BTD, None


class _ScanCacheBlock(Block):
  """Block in `nn.scan` form over stacked caches (carry = activations), for a prefill."""

  def __call__(self, x_BTD, cache_k_BKHS, cache_v_BKSH, sliding, positions_BT, key_pos_BS,
               write_index):
    x_BTD, k_BKHS, v_BKSH = super().__call__(x_BTD, positions_BT, key_pos_BS, cache_k_BKHS,
                                             cache_v_BKSH, write_index, sliding)
    return x_BTD, (k_BKHS, v_BKSH)


class Transformer(nn.Module):
  """`__call__(tokens_BT, positions_BT, input_mask_BT, cache, write_index) -> (logits, cache)`.

  Without a cache, attention is causal over the T given tokens (training, scoring). With a
  cache, the T tokens are written at slots [write_index, write_index + T) and attend to
  every earlier real slot. `last_only` returns logits for the final position only, which
  is all a sampler needs after prefill (the full [B, T, V] logits dominate prefill cost).
  """
  config: ModelConfig

  @nn.compact
  def __call__(self, tokens_BT, positions_BT, input_mask_BT=None, cache: KVCache | None = None,
               write_index=0, last_only: bool = False):
    cfg = self.config
    dt = cfg.compute_dtype
    B, T = tokens_BT.shape
    if input_mask_BT is None:
      input_mask_BT = jnp.ones((B, T), bool)
    embed_VD = layers.param(self, "embed", (cfg.vocab_size, cfg.hidden_size),
                            ("vocab", "embed"))
    x_BTD = jnp.take(embed_VD, tokens_BT, axis=0).astype(dt)
    if cfg.scale_embeddings:  # in the compute dtype, as Hugging Face's gemma rounds it
      x_BTD = x_BTD * jnp.asarray(np.sqrt(cfg.hidden_size), dt)
    token_pos_BT = jnp.where(input_mask_BT, positions_BT, -1).astype(jnp.int32)
    # Per-layer sliding flags, scanned beside the params (a Python False when no layer
    # slides, so the other families trace no window mask at all).
    sliding_L = (jnp.asarray(cfg.sliding_layers) if cfg.has_sliding_layers
                 else jnp.zeros((cfg.num_layers,), bool))

    scan = functools.partial(
        nn.scan, variable_axes={"params": 0}, split_rngs={"params": True},
        length=cfg.num_layers, metadata_params={nn.PARTITION_NAME: "layers"})
    new_cache = None
    if cache is None or self.is_initializing():
      blocks = scan(_ScanBlock, in_axes=(0,) + (nn.broadcast,) * 2)(cfg, name="layers")
      x_BTD, _ = blocks(x_BTD, sliding_L, positions_BT, token_pos_BT)
    else:
      key_pos_BS = jax.lax.dynamic_update_slice_in_dim(cache.positions_BS, token_pos_BT,
                                                       write_index, axis=1)
      stacked = self.variables["params"]["layers"]
      if T > 1 and not isinstance(stacked, tuple) and cache.prefix is None:
        # A prefill (once per batch) runs the layers as a scan over the stacked params and
        # caches, as training does: unrolled, it was a third of a decode program's compile
        # time (SmolLM2 at -O0, k=1: 12.5 s -> 8.4 s) for no speed (benchmarks/RESULTS.md).
        blocks = scan(_ScanCacheBlock, in_axes=(0, 0, 0) + (nn.broadcast,) * 3)(
            cfg, name="layers")
        x_BTD, (k_LBKHS, v_LBKSH) = blocks(
            x_BTD, jnp.stack(cache.k_BKHS), jnp.stack(cache.v_BKSH), sliding_L,
            positions_BT, key_pos_BS, write_index)
        new_k = tuple(k_LBKHS[i] for i in range(cfg.num_layers))
        new_v = tuple(v_LBKSH[i] for i in range(cfg.num_layers))
      else:
        x_BTD, new_k, new_v = self._unrolled(stacked, x_BTD, positions_BT, key_pos_BS,
                                             cache, write_index)
      new_cache = cache.replace(k_BKHS=new_k, v_BKSH=new_v, positions_BS=key_pos_BS)

    if last_only:
      x_BTD = x_BTD[:, -1:]
    x_BTD = _norm(cfg, "final_norm")(x_BTD)
    if cfg.tie_word_embeddings:
      logits_BTV = jnp.einsum("btd,vd->btv", x_BTD, embed_VD.astype(dt),
                              preferred_element_type=jnp.float32)
    else:
      head_DV = layers.param(self, "lm_head", (cfg.hidden_size, cfg.vocab_size),
                             ("embed", "vocab"))
      logits_BTV = jnp.einsum("btd,dv->btv", x_BTD, head_DV.astype(dt),
                              preferred_element_type=jnp.float32)
    return layers.softcap(logits_BTV, cfg.final_logit_softcap), new_cache

  def _unrolled(self, stacked, x_BTD, positions_BT, key_pos_BS, cache: KVCache, write_index):
    """A decode step's layers, unrolled: each layer's cache is then its own buffer, updated
    in place inside the decode loop (a scan carrying all layers' caches copies them at
    every step). Returns (x, new keys per layer, new values per layer)."""
    cfg = self.config
    new_k, new_v = [], []
    for i, sliding in enumerate(cfg.sliding_layers):
      # Stacked params (as trained and stored) or a tuple of per-layer params
      # (`unstack_layers`, done once before a decode loop so no step slices weights).
      layer_params = stacked[i] if isinstance(stacked, tuple) else jax.tree.map(
          lambda w: w[i], stacked)
      prefix = None
      if cache.prefix is not None:
        prefix = (cache.prefix.k_PKHX[i], cache.prefix.v_PKXH[i], cache.prefix.positions_PX)
      x_BTD, k_i, v_i = Block(cfg).apply(
          {"params": layer_params}, x_BTD, positions_BT, key_pos_BS, cache.k_BKHS[i],
          cache.v_BKSH[i], write_index, sliding, prefix)
      new_k.append(k_i)
      new_v.append(v_i)
    return x_BTD, tuple(new_k), tuple(new_v)


def unstack_layers(params):
  """Params with the stacked `layers` split into a tuple of per-layer trees, which the cache
  path reads directly. Inside a decode loop, slicing the stacked weights each step made
  XLA:CPU copy some of them (about 10% of a SmolLM2 step)."""
  stacked = params["layers"]
  if isinstance(stacked, tuple):
    return params
  num_layers = jax.tree.leaves(stacked)[0].shape[0]
  return {**params, "layers": tuple(jax.tree.map(lambda w: w[i], stacked)
                                    for i in range(num_layers))}


def _init_args():
  return jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32), jnp.zeros((1, 4), jnp.int32)


def init_params(config: ModelConfig, seed: int = 0):
  """Random parameters (unboxed), for tests and benchmarks of configs without weights."""
  _, tokens, positions = _init_args()
  variables = jax.jit(Transformer(config).init)(jax.random.PRNGKey(seed), tokens, positions)
  return nn.meta.unbox(variables["params"])


@functools.lru_cache(maxsize=16)
def _abstract_params(config: ModelConfig):
  return jax.eval_shape(Transformer(config).init, *_init_args())["params"]


def logical_axes(config: ModelConfig):
  """Pytree of logical axis-name tuples, same structure as the params (cached per config:
  tracing the model's init costs ~0.3 s and every load, placement and trainer asks)."""
  return jax.tree.map(lambda p: tuple(p.names), _abstract_params(config),
                      is_leaf=lambda x: isinstance(x, nn.Partitioned))


def param_shapes(config: ModelConfig):
  """Pytree of the params' shapes (tuples), same structure as the params."""
  return jax.tree.map(lambda p: tuple(p.value.shape), _abstract_params(config),
                      is_leaf=lambda x: isinstance(x, nn.Partitioned))
