"""Batched log-likelihood of (context, continuation) pairs: the scorer of every profile suite.

A group is one context and its J options (continuations). Groups are bucketed by (J,
context length, option length); each bucket runs one of two programs, whichever costs
fewer tokens (`PLAIN_COST_RATIO`):
  shared  each batch prefills its P contexts once; the options then read their context's
          cache as a shared prefix (as a prompt's k samples do when sampling) and run as
          R = P * J rows of A continuation tokens: a BBQ passage shared by its three
          answers is computed once, not three times;
  plain   R rows of context + option (T tokens) in one causal forward with no cache: for
          short contexts (a sentence scored on its own after BOS) the cheaper one.

Shapes (docs/glossary.md): P contexts, J options per context, R = P * J scored rows,
T bucketed context length (left-padded), A bucketed continuation length (right-padded),
V vocabulary.

Tokenisation follows lm-eval-harness: the continuation's ids are those of
`context + continuation` after the context's own ids, and a context's trailing spaces move
to the continuation, so the pair tokenises as the whole text would. An empty context is the
tokenizer's BOS (or, without one, its EOS), as lm-eval scores a sentence on its own.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from ai_jax import models
from ai_jax.buckets import bucket_length, fine_bucket_length
from ai_jax.sharding import mesh as mesh_lib

TOO_LONG_POLICIES = ("skip", "truncate", "error")


class ItemTooLongError(ValueError):
  pass


@dataclasses.dataclass(frozen=True)
class Group:
  """One context and its options, as token ids (`encode_group` makes one from text)."""
  context: tuple[int, ...]
  options: tuple[tuple[int, ...], ...]


@dataclasses.dataclass(frozen=True)
class ScoringOptions:
  batch_tokens: int = 2048        # R * A per batch: bounds the [R, A, V] logits in memory
  max_contexts: int = 32          # P per batch
  min_bucket: int = 16            # context lengths round up to 2^k or 1.5 * 2^k >= this
  min_option_bucket: int = 8      # continuation lengths (and plain rows) likewise
  too_long: str = "skip"          # a group longer than the context window: "skip" (counted
                                  # and reported), "truncate" (drop the context's first
                                  # tokens, as lm-eval does) or "error"
  max_context: int | None = None  # default: the model's max_position_embeddings

  def __post_init__(self):
    if self.too_long not in TOO_LONG_POLICIES:
      raise ValueError(f"too_long={self.too_long!r}; choose one of {TOO_LONG_POLICIES}")
    for name in ("batch_tokens", "max_contexts", "min_bucket", "min_option_bucket"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class GroupScore:
  """Per option: summed log-likelihood, token count; None where the group was skipped."""
  sum_J: np.ndarray | None
  num_tokens_J: np.ndarray | None
  truncated: int = 0              # context tokens dropped (too_long="truncate")

  @property
  def mean_J(self) -> np.ndarray | None:
    return None if self.sum_J is None else self.sum_J / self.num_tokens_J


def encode_group(tokenizer, context: str, options: Sequence[str]) -> Group:
  """The ids of a context and its options, each option tokenised in place after the context
  (with the tokenizer's own BOS convention)."""
  n_space = len(context) - len(context.rstrip(" "))
  if n_space:
    context, options = context[:-n_space], [" " * n_space + o for o in options]
  ctx = list(tokenizer.encode(context)) if context else []
  if not context or not ctx:
    ctx = [tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id]
    return Group(context=tuple(ctx),
                 options=tuple(tuple(tokenizer.encode(o, add_bos=False)) for o in options))
  out = []
  for o in options:
    whole = list(tokenizer.encode(context + o))
    if len(whole) > len(ctx) and whole[:len(ctx)] == ctx:
      out.append(tuple(whole[len(ctx):]))
    else:  # the boundary merged into one token: encode the option on its own instead
      out.append(tuple(tokenizer.encode(o, add_bos=False)))
  return Group(context=tuple(ctx), options=tuple(out))


def score_rows(params, ctx_PT, ctx_mask_PT, cont_RA, cont_mask_RA, *,
               config: models.ModelConfig, mesh: Mesh | None = None):
  """(sum log p, token count) per row: row r continues context r // J (J = R / P)."""
  P, T = ctx_PT.shape
  R, A = cont_RA.shape
  J = R // P
  ctx_len_P = jnp.sum(ctx_mask_PT, axis=-1).astype(jnp.int32)
  positions_PT = jnp.maximum(jnp.cumsum(ctx_mask_PT, axis=-1) - 1, 0).astype(jnp.int32)
  cache = mesh_lib.constrain(models.init_cache(config, P, T), mesh)
  last_P1V, cache = models.apply(params, ctx_PT, positions_PT, ctx_mask_PT, cache, 0,
                                 config=config, last_only=True)
  rows = mesh_lib.constrain(models.init_cache(config, R, A, prefix=cache.as_prefix()), mesh)
  positions_RA = jnp.repeat(ctx_len_P, J)[:, None] + jnp.arange(A, dtype=jnp.int32)
  logits_RAV, _ = models.apply(params, cont_RA, positions_RA, cont_mask_RA, rows, 0,
                               config=config)
  # Token a of a row is predicted by its position a - 1; token 0 by the context's last.
  logits_RAV = jnp.concatenate([jnp.repeat(last_P1V, J, axis=0), logits_RAV[:, :-1]], axis=1)
  logp_RA = (jnp.take_along_axis(logits_RAV, cont_RA[:, :, None], axis=-1)[..., 0]
             - jax.nn.logsumexp(logits_RAV, axis=-1))
  mask_RA = cont_mask_RA.astype(jnp.float32)
  return jnp.sum(logp_RA * mask_RA, axis=-1), jnp.sum(cont_mask_RA, axis=-1).astype(jnp.int32)


def score_rows_plain(params, tokens_RT, mask_RT, cont_mask_RT, *,
                     config: models.ModelConfig, mesh: Mesh | None = None):
  """(sum log p, token count) per row of context + continuation in one causal forward:
  cont_mask_RT marks the continuation's tokens. Cheaper than score_rows when contexts are
  short (no cache to write and read, one program over the layers' scan)."""
  del mesh  # the batch sharding comes from the jit's in_shardings
  T = tokens_RT.shape[1]
  positions_RT = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), tokens_RT.shape)
  logits_RTV, _ = models.apply(params, tokens_RT, positions_RT, mask_RT, config=config)
  logits_RTV = logits_RTV[:, :-1]
  logp_RT = (jnp.take_along_axis(logits_RTV, tokens_RT[:, 1:, None], axis=-1)[..., 0]
             - jax.nn.logsumexp(logits_RTV, axis=-1))
  mask_RT = cont_mask_RT[:, 1:]
  return (jnp.sum(logp_RT * mask_RT.astype(jnp.float32), axis=-1),
          jnp.sum(mask_RT, axis=-1).astype(jnp.int32))




@functools.lru_cache(maxsize=16)
def compiled_score_rows(config: models.ModelConfig, mesh: Mesh | None, shared: bool = True):
  """One jitted scorer per (config, mesh, shared context or not); each shape compiles once."""
  fn = functools.partial(score_rows if shared else score_rows_plain, config=config, mesh=mesh)
  if mesh is None:
    return jax.jit(fn)
  batch, vec = mesh_lib.batch_sharding(mesh, 2), mesh_lib.batch_sharding(mesh, 1)
  return jax.jit(fn, in_shardings=(None,) + (batch,) * (4 if shared else 3),
                 out_shardings=(vec, vec))


def _fit(group: Group, limit: int, policy: str, where: str) -> tuple[Group | None, int]:
  """The group within `limit` positions by the policy: (group or None if skipped, dropped)."""
  longest = max(len(o) for o in group.options)
  over = len(group.context) + longest - limit
  if over <= 0:
    return group, 0
  if policy == "error" or (policy == "truncate" and longest >= limit):
    raise ItemTooLongError(
        f"{where} needs {len(group.context) + longest} positions (context "
        f"{len(group.context)} + longest option {longest} tokens) but the model's context "
        f"is {limit}. Set profile.too_long='skip' (counted and reported) or 'truncate' "
        "(drops the context's first tokens), or shorten the item.")
  if policy == "skip":
    return None, 0
  return Group(context=group.context[over:], options=group.options), over


def score_groups(model, groups: Sequence[Group], options: ScoringOptions = ScoringOptions(),
                 names: Sequence[str] | None = None) -> list[GroupScore]:
  """Every group's option log-likelihoods, in input order. `model` is a LoadedModel (config,
  params, tokenizer, mesh); `names` label groups in errors (default: their index)."""
  limit = options.max_context or model.config.max_position_embeddings
  fitted: list[tuple[int, Group, int]] = []
  results: list[GroupScore | None] = [None] * len(groups)
  for i, g in enumerate(groups):
    where = f"item {names[i] if names is not None else i}"
    if not g.options or any(len(o) == 0 for o in g.options) or not g.context:
      raise ValueError(f"{where} has an empty context or option: every option needs at "
                       "least one token (the suite loaders skip and count such items)")
    fit, dropped = _fit(g, limit, options.too_long, where)
    if fit is None:
      results[i] = GroupScore(sum_J=None, num_tokens_J=None)
    else:
      fitted.append((i, fit, dropped))
  pad_id = int(model.tokenizer.pad_id)
  data = model.mesh.shape["data"] if model.mesh is not None else 1
  # Shared: P contexts once plus R = P * J continuations, through a cache. Plain: rows of
  # context + option in one forward, each context once per option, but with no cache to
  # write and read (measured on SmolLM2, 2 cores: about 1.6x cheaper per token). Each group
  # takes the cheaper one; long contexts with several options (BBQ) share.
  shared_by_shape: dict[tuple, list] = {}
  plain_by_length: dict[int, list] = {}
  for i, g, dropped in fitted:
    J, longest = len(g.options), max(len(o) for o in g.options)
    T = fine_bucket_length(len(g.context), options.min_bucket)
    A = fine_bucket_length(longest, options.min_option_bucket)
    if J * (len(g.context) + longest) > PLAIN_COST_RATIO * (T + J * A):
      shared_by_shape.setdefault((J, T, A), []).append((i, g, dropped))
    else:
      for j, o in enumerate(g.options):
        T_row = min(fine_bucket_length(len(g.context) + len(o), options.min_option_bucket),
                limit)
        plain_by_length.setdefault(T_row, []).append((i, j, g.context + o, len(g.context)))
  # group index -> option index -> (summed log-likelihood, tokens)
  scored: dict[int, dict[int, tuple[float, int]]] = {i: {} for i, _, _ in fitted}
  for (J, T, A), items in sorted(shared_by_shape.items()):
    P = _batch_rows(len(items), T + J * A, options.max_contexts, options.batch_tokens, data)
    fn = compiled_score_rows(model.config, model.mesh, True)
    for start in range(0, len(items), P):
      chunk = items[start:start + P]
      full = [g for _, g, _ in chunk] + [chunk[0][1]] * (P - len(chunk))
      sum_R, count_R = jax.device_get(fn(model.params,
                                         *_shared_arrays(full, J, T, A, pad_id)))
      for p, (i, _, _) in enumerate(chunk):
        for j in range(J):
          scored[i][j] = (sum_R[p * J + j], count_R[p * J + j])
  for T_row, rows in sorted(plain_by_length.items()):
    R = _batch_rows(len(rows), T_row, options.max_contexts * 4, options.batch_tokens, data)
    fn = compiled_score_rows(model.config, model.mesh, False)
    for start in range(0, len(rows), R):
      chunk = rows[start:start + R]
      full = chunk + [chunk[0]] * (R - len(chunk))
      sum_R, count_R = jax.device_get(fn(model.params, *_plain_arrays(full, T_row, pad_id)))
      for r, (i, j, _, _) in enumerate(chunk):
        scored[i][j] = (sum_R[r], count_R[r])
  for i, g, dropped in fitted:
    by_option = [scored[i][j] for j in range(len(g.options))]
    results[i] = GroupScore(sum_J=np.asarray([x for x, _ in by_option], np.float64),
                            num_tokens_J=np.asarray([n for _, n in by_option]),
                            truncated=dropped)
  return results  # type: ignore[return-value]


def _batch_rows(n: int, tokens_per_row: int, max_rows: int, batch_tokens: int,
                data: int) -> int:
  """Rows (or contexts) per batch: a power of two, so that few shapes compile (each is
  reused by every suite and model of a process); within the token budget; a multiple of
  the data axis so the rows split evenly over it. The last batch is filled up."""
  cap = max(1, min(max_rows, batch_tokens // tokens_per_row))
  cap = 1 << (cap.bit_length() - 1)
  rows = min(cap, bucket_length(n, 1))
  return -(-rows // data) * data


# A plain row costs about 1 / 1.6 of a shared-context row per token (see score_groups).
PLAIN_COST_RATIO = 1.6


def _shared_arrays(groups: Sequence[Group], J: int, T: int, A: int, pad_id: int):
  P = len(groups)
  ctx_PT = np.full((P, T), pad_id, np.int32)
  ctx_mask_PT = np.zeros((P, T), bool)
  cont_RA = np.full((P * J, A), pad_id, np.int32)
  cont_mask_RA = np.zeros((P * J, A), bool)
  for p, g in enumerate(groups):
    ctx_PT[p, T - len(g.context):] = g.context
    ctx_mask_PT[p, T - len(g.context):] = True
    for j, o in enumerate(g.options):
      cont_RA[p * J + j, :len(o)] = o
      cont_mask_RA[p * J + j, :len(o)] = True
  return ctx_PT, ctx_mask_PT, cont_RA, cont_mask_RA


def _plain_arrays(rows: Sequence[tuple], T: int, pad_id: int):
  """rows: (group index, option index, context + option ids, context length)."""
  tokens_RT = np.full((len(rows), T), pad_id, np.int32)
  mask_RT = np.zeros((len(rows), T), bool)
  cont_mask_RT = np.zeros((len(rows), T), bool)
  for r, (_, _, ids, n) in enumerate(rows):
    tokens_RT[r, :len(ids)] = ids
    mask_RT[r, :len(ids)] = True
    cont_mask_RT[r, n:len(ids)] = True
  return tokens_RT, mask_RT, cont_mask_RT
