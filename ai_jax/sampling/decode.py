"""The jitted part of sampling: prefill each prompt once, share its cache among its k
samples, decode.

Shapes (letters from docs/glossary.md): B prompts per batch, J samples per prompt,
R = B * J rows, T bucketed prompt length (left-padded), A max new tokens, V vocabulary.
With J > 1 the prompt cache (T slots per prompt) is one shared prefix that the prompt's J
rows all read, never copied; each row has A slots of its own for what it generates.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from ai_jax import models
from ai_jax.sampling import processors
from ai_jax.sharding import mesh as mesh_lib


@dataclasses.dataclass(frozen=True)
class DecodeSpec:
  num_samples: int            # J
  max_new_tokens: int         # A
  stop_ids: tuple[int, ...]
  pad_id: int


@flax.struct.dataclass
class DecodeState:
  step: jax.Array               # scalar int32
  logits_RV: tuple              # per stream: next-token logits per row
  caches: tuple                 # per stream: its models.KVCache
  tokens_RA: jax.Array
  num_tokens_R: jax.Array       # generated tokens, not counting a stop token
  stopped_R: jax.Array          # row emitted a stop token


@dataclasses.dataclass(frozen=True)
class Stream:
  """One model reading one prompt per row group while every stream decodes the same
  tokens: `model` indexes the params/configs given to generate_streams; its prompts are
  either the batch's B prompts, each shared (as a cache prefix) by its J sample rows, or
  one prompt per row (R prompts: e.g. a negative prompt drawn per sample)."""
  model: int = 0
  per_row: bool = False


def row_keys(seed, prompt_hash_B, num_samples: int, first_sample=0):
  """Per-row PRNG keys from (seed, prompt_id hash, sample_index): batch-independent.

  Rows are sample indices first_sample .. first_sample + num_samples - 1, so a run
  extended from k to k' > k draws only the new indices and the old ones stay as they were.
  """
  base = jax.random.PRNGKey(seed)
  sample_idx_J = jnp.asarray(first_sample, jnp.uint32) + jnp.arange(num_samples,
                                                                     dtype=jnp.uint32)
  per_prompt = jax.vmap(lambda h: jax.random.fold_in(base, h))(prompt_hash_B)
  per_row = jax.vmap(lambda k: jax.vmap(lambda j: jax.random.fold_in(k, j))(sample_idx_J))(
      per_prompt)
  return per_row.reshape(-1, per_row.shape[-1])



def generate(params, tokens_BT, mask_BT, prompt_hash_B, seed, first_sample=0, *,
             config: models.ModelConfig,
             spec: DecodeSpec, strategy: Callable, mesh: Mesh | None = None) -> dict[str, Any]:
  """Samples J continuations of each of B left-padded prompts; returns arrays per row."""
  return generate_streams((params,), (tokens_BT,), (mask_BT,), prompt_hash_B, seed,
                          first_sample, processors.FirstStream(), configs=(config,),
                          streams=(Stream(),), spec=spec, strategy=strategy, mesh=mesh)


def _prefill(params, tokens_BT, mask_BT, config, R: int, A: int, mesh):
  """(logits_RV, cache, prompt_len_R, first_slot) of one stream after its prefill."""
  apply = functools.partial(models.apply, config=config)
  B, T = tokens_BT.shape
  J = R // B
  prompt_len_B = jnp.sum(mask_BT, axis=-1).astype(jnp.int32)
  positions_BT = jnp.maximum(jnp.cumsum(mask_BT, axis=-1) - 1, 0).astype(jnp.int32)
  # One row per prompt: the prompt and its continuation share one cache of T + A slots.
  # Several: the prompt cache becomes a shared prefix (below).
  shared_prefix = J > 1
  cache = mesh_lib.constrain(models.init_cache(config, B, T if shared_prefix else T + A),
                            mesh)
  # The prefill reads the stacked params (the model scans its layers).
  logits_B1V, cache = apply(params, tokens_BT, positions_BT, mask_BT, cache, 0,
                            last_only=True)
  if shared_prefix:
    # One prefill per prompt. Its J samples read that one prompt cache (the prefix) and
    # write their own tokens into per-row slots, so the prompt is neither recomputed nor
    # copied J times.
    cache = mesh_lib.constrain(models.init_cache(config, R, A, prefix=cache.as_prefix()), mesh)
  # Decode step i writes slot first_slot + i: after the prompt, or first in its own slots.
  first_slot = 0 if shared_prefix else T
  return (jnp.repeat(logits_B1V[:, 0], J, axis=0), cache, jnp.repeat(prompt_len_B, J, axis=0),
          first_slot, prompt_len_B)


def generate_streams(params, tokens, masks, prompt_hash_B, seed, first_sample=0,
                     processor: Callable = processors.FirstStream(), *,
                     configs: tuple, streams: tuple[Stream, ...], spec: DecodeSpec,
                     strategy: Callable, mesh: Mesh | None = None) -> dict[str, Any]:
  """Samples J continuations of each of B prompts with several streams in lock-step.

  params / configs: one per model; tokens / masks: one left-padded batch per stream ([B, T]
  or, for a per-row stream, [R, T], R = B * J). Each stream prefills its own prompts and
  keeps its own KV cache; at every step `processor(logits per stream)` gives the logits
  `strategy` samples the next token from, which every stream then reads. With one stream
  and `FirstStream` this is the plain decoder. The processor is a pytree argument, so its
  weights (gamma, eta, a guidance scale) are traced, not compiled in.
  """
  if len(streams) != processor.num_streams:
    raise ValueError(f"{type(processor).__name__} reads {processor.num_streams} streams, "
                     f"the decoder was given {len(streams)}")
  B = prompt_hash_B.shape[0]
  J, A = spec.num_samples, spec.max_new_tokens
  R = B * J
  logits, caches, prompt_lens, first_slots = [], [], [], []
  prompt_len_B = None
  for stream, tokens_BT, mask_BT in zip(streams, tokens, masks, strict=True):
    want = R if stream.per_row else B
    if tokens_BT.shape[0] != want:
      raise ValueError(f"stream of model {stream.model} has {tokens_BT.shape[0]} prompts, "
                       f"expected {want} ({'per row' if stream.per_row else 'per prompt'})")
    out = _prefill(params[stream.model], tokens_BT, mask_BT, configs[stream.model], R, A, mesh)
    logits.append(out[0])
    caches.append(out[1])
    prompt_lens.append(out[2])
    first_slots.append(out[3])
    prompt_len_B = out[4] if prompt_len_B is None else prompt_len_B
  # The decode steps read per-layer params, split once here so that no step slices weights.
  step_params = tuple(models.unstack_layers(p) for p in params)
  keys_R2 = row_keys(seed, prompt_hash_B, J, first_sample)
  stop_ids = jnp.asarray(spec.stop_ids, jnp.int32)

  def cond(state: DecodeState):
    return (state.step < A) & ~jnp.all(state.stopped_R)

  def body(state: DecodeState):
    token_R = strategy(processor(state.logits_RV), keys_R2, state.step)
    token_R = jnp.where(state.stopped_R, spec.pad_id, token_R)
    is_stop_R = jnp.isin(token_R, stop_ids) & ~state.stopped_R
    tokens_RA = jax.lax.dynamic_update_index_in_dim(state.tokens_RA, token_R, state.step, 1)
    num_tokens_R = state.num_tokens_R + (~state.stopped_R & ~is_stop_R).astype(jnp.int32)
    stopped_R = state.stopped_R | is_stop_R
    new_logits, new_caches = [], []
    for stream, cache, prompt_len_R, first_slot in zip(streams, state.caches, prompt_lens,
                                                        first_slots):
      logits_R1V, cache = models.apply(
          step_params[stream.model], token_R[:, None], (prompt_len_R + state.step)[:, None],
          jnp.ones((R, 1), bool), cache, first_slot + state.step,
          config=configs[stream.model])
      new_logits.append(logits_R1V[:, 0])
      new_caches.append(cache)
    return DecodeState(step=state.step + 1, logits_RV=tuple(new_logits),
                       caches=tuple(new_caches), tokens_RA=tokens_RA,
                       num_tokens_R=num_tokens_R, stopped_R=stopped_R)

  init = DecodeState(step=jnp.int32(0), logits_RV=tuple(logits), caches=tuple(caches),
                     tokens_RA=jnp.full((R, A), spec.pad_id, jnp.int32),
                     num_tokens_R=jnp.zeros((R,), jnp.int32),
                     stopped_R=jnp.zeros((R,), bool))
  final = jax.lax.while_loop(cond, body, init)
  return {"tokens_RA": final.tokens_RA, "num_tokens_R": final.num_tokens_R,
          "stopped_R": final.stopped_R, "prompt_len_B": prompt_len_B}


def _jit(fn, mesh: Mesh | None, num_streams: int | None):
  """jit with the batch split over the mesh's data axis (num_streams None: one stream's
  arrays, not tuples of them)."""
  if mesh is None:
    return jax.jit(fn)
  batch = mesh_lib.batch_sharding(mesh, 2)
  vec = mesh_lib.batch_sharding(mesh, 1)
  out = {"tokens_RA": batch, "num_tokens_R": vec, "stopped_R": vec, "prompt_len_B": vec}
  rep = mesh_lib.replicated(mesh)
  if num_streams is None:
    return jax.jit(fn, in_shardings=(None, batch, batch, vec, rep, rep), out_shardings=out)
  prompts = (batch,) * num_streams
  # The last argument is the processor (a pytree of its weights), replicated.
  return jax.jit(fn, in_shardings=(None, prompts, prompts, vec, rep, rep, rep),
                 out_shardings=out)


@functools.lru_cache(maxsize=64)
def compiled_generate(config: models.ModelConfig, spec: DecodeSpec, strategy,
                      mesh: Mesh | None):
  """One jitted generate per (config, spec, strategy, mesh); shapes add their own entries."""
  return _jit(functools.partial(generate, config=config, spec=spec, strategy=strategy,
                                mesh=mesh), mesh, None)


@functools.lru_cache(maxsize=32)
def compiled_generate_streams(configs: tuple, streams: tuple[Stream, ...], spec: DecodeSpec,
                              strategy, processor_type: type, mesh: Mesh | None):
  """One jitted generate_streams per (configs, streams, spec, strategy, processor type,
  mesh): call it as fn(params, tokens, masks, hashes, seed, first_sample, processor), so
  processors of one type with other weights share the compiled program."""
  del processor_type  # part of the cache key: a new type is a new program anyway
  return _jit(functools.partial(generate_streams, configs=configs, streams=streams, spec=spec,
                                strategy=strategy, mesh=mesh), mesh, len(streams))


def forward_logits(params, tokens_BT, *, config: models.ModelConfig, mask_BT=None):
  """Full causal forward (no cache) -> logits_BTV; for scoring and parity tests."""
  B, T = tokens_BT.shape
  positions_BT = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
  logits, _ = models.apply(params, tokens_BT, positions_BT, mask_BT, config=config)
  return logits
