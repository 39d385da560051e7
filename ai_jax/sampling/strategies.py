"""Sampling strategies as frozen dataclasses: `strategy(logits_RV, keys_R2, step) -> tokens_R`.

Randomness is one uniform number per row and step, drawn from that row's own key folded
with the step index. A row's key is derived from (seed, prompt_id, sample_index) by the
sampler, so a sample does not depend on batch size, batch order or sharding.

Categorical draws use the inverse CDF (cumulative sum + comparison), not Gumbel-max: the
latter needs V random numbers per row and step, which on CPU costs as much as the model.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

# Probabilities lie in [0, 1], whose float32 bit patterns (read as int32) are ordered like
# the floats and all below 2**30: 31 halvings pin a threshold down to one bit pattern.
_BISECTION_STEPS = 31


def _uniform_R(keys_R2, step):
  return jax.vmap(lambda key: jax.random.uniform(jax.random.fold_in(key, step)))(keys_R2)


def _draw_inverse_cdf(logits_RC, u_R):
  """Index into the last axis of `logits_RC` drawn by inverse CDF; masked entries are -inf
  and may sit anywhere (the order of the axis does not matter)."""
  probs_RC = jax.nn.softmax(logits_RC.astype(jnp.float32), axis=-1)
  cdf_RC = jnp.cumsum(probs_RC, axis=-1)
  threshold_R = u_R * cdf_RC[:, -1]
  # The first entry whose cdf exceeds the threshold: a zero-probability entry repeats the
  # cdf before it, so it is never the first to exceed anything.
  idx_R = jnp.sum(cdf_RC <= threshold_R[:, None], axis=-1)
  # u * total can round up to total; then fall back to the last entry with mass.
  last_positive_R = logits_RC.shape[-1] - 1 - jnp.argmax(probs_RC[:, ::-1] > 0, axis=-1)
  return jnp.minimum(idx_R, last_positive_R)


@dataclasses.dataclass(frozen=True)
class Greedy:
  def __call__(self, logits_RV, keys_R2, step):
    del keys_R2, step
    return jnp.argmax(logits_RV, axis=-1).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class Temperature:
  temperature: float = 1.0

  def __post_init__(self):
    if not self.temperature > 0:
      raise ValueError(f"temperature must be > 0 (got {self.temperature}); use Greedy for 0.")

  def __call__(self, logits_RV, keys_R2, step):
    u_R = _uniform_R(keys_R2, step)
    return _draw_inverse_cdf(logits_RV / self.temperature, u_R).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class TopK:
  k: int
  temperature: float = 1.0

  def __post_init__(self):
    if self.k < 1:
      raise ValueError(f"top_k must be >= 1 (got {self.k}).")
    if not self.temperature > 0:
      raise ValueError(f"temperature must be > 0 (got {self.temperature}).")

  def __call__(self, logits_RV, keys_R2, step):
    k = min(self.k, logits_RV.shape[-1])
    top_logits_RC, top_idx_RC = jax.lax.top_k(logits_RV, k)
    u_R = _uniform_R(keys_R2, step)
    choice_R = _draw_inverse_cdf(top_logits_RC / self.temperature, u_R)
    return jnp.take_along_axis(top_idx_RC, choice_R[:, None], axis=-1)[:, 0].astype(jnp.int32)


def _nucleus_mask(sorted_logits_RC, top_p, log_norm_R):
  """Keeps the smallest prefix (in sorted order) whose probability reaches top_p.

  `log_norm_R` is the log-partition of the distribution the nucleus is taken from, which
  for a candidate subset is that of the full vocabulary, not of the subset.
  """
  probs_RC = jnp.exp(sorted_logits_RC - log_norm_R[:, None])
  mass_before_RC = jnp.cumsum(probs_RC, axis=-1) - probs_RC
  return jnp.where(mass_before_RC < top_p, sorted_logits_RC, -jnp.inf)


def _nucleus_threshold_mask(logits_RV, top_p, log_norm_R):
  """The nucleus without sorting: keeps token i iff the mass of tokens more probable than i
  is below top_p, which is the sorted-prefix rule except that exact ties at the edge are all
  kept (a sort would keep an arbitrary subset of them).

  The rule is a threshold on probability; the threshold is found per row by bisection over
  float bit patterns, 31 masked sums over V. A full sort of a 49k vocabulary costs about 15x
  more on CPU, and is what made nucleus sampling 4x slower than greedy decoding.
  """
  probs_RV = jnp.exp(logits_RV - log_norm_R[:, None])
  bits_RV = jax.lax.bitcast_convert_type(probs_RV, jnp.int32)

  def halve(_, bounds):
    lo_R, hi_R = bounds
    mid_R = lo_R + (hi_R - lo_R) // 2
    mass_above_R = jnp.sum(jnp.where(bits_RV > mid_R[:, None], probs_RV, 0.0), axis=-1)
    inside_R = mass_above_R < top_p  # every token with probability >= mid would be kept
    return jnp.where(inside_R, lo_R, mid_R + 1), jnp.where(inside_R, mid_R, hi_R)

  # hi starts at the top token, which is always kept (nothing is above it).
  bounds = (jnp.zeros_like(bits_RV[:, 0]), jnp.max(bits_RV, axis=-1))
  _, threshold_R = jax.lax.fori_loop(0, _BISECTION_STEPS, halve, bounds)
  return jnp.where(bits_RV >= threshold_R[:, None], logits_RV, -jnp.inf)


@dataclasses.dataclass(frozen=True)
class TopP:
  p: float
  temperature: float = 1.0
  top_k: int | None = None  # optional top-k cut applied before the nucleus

  def __post_init__(self):
    if not 0 < self.p <= 1:
      raise ValueError(f"top_p must be in (0, 1] (got {self.p}).")
    if not self.temperature > 0:
      raise ValueError(f"temperature must be > 0 (got {self.temperature}).")

  def __call__(self, logits_RV, keys_R2, step):
    scaled_RV = logits_RV.astype(jnp.float32) / self.temperature
    u_R = _uniform_R(keys_R2, step)
    if self.top_k is not None:  # top-k first: the nucleus is taken in the renormalised top-k.
      top_RC, idx_RC = jax.lax.top_k(scaled_RV, min(self.top_k, scaled_RV.shape[-1]))
      log_norm_R = jax.nn.logsumexp(top_RC, axis=-1)
      choice_R = _draw_inverse_cdf(_nucleus_mask(top_RC, self.p, log_norm_R), u_R)
      return jnp.take_along_axis(idx_RC, choice_R[:, None], axis=-1)[:, 0].astype(jnp.int32)
    log_norm_R = jax.nn.logsumexp(scaled_RV, axis=-1)
    masked_RV = _nucleus_threshold_mask(scaled_RV, self.p, log_norm_R)
    return _draw_inverse_cdf(masked_RV, u_R).astype(jnp.int32)


def from_config(temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                greedy: bool = False):
  """Maps the usual knobs (as in configs) to a strategy; temperature 0 means greedy."""
  if greedy or temperature == 0:
    return Greedy()
  top_k = top_k or None
  if top_p is not None and top_p < 1.0:
    return TopP(p=float(top_p), temperature=float(temperature), top_k=top_k)
  if top_k is not None:
    return TopK(k=int(top_k), temperature=float(temperature))
  return Temperature(float(temperature))
