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

# Top-p first looks at this many candidates; if they hold less than top_p of the mass for
# some row, it falls back to a full sort, so the result is exact either way.
_TOP_P_CANDIDATES = 256


def _uniform_R(keys_R2, step):
  return jax.vmap(lambda key: jax.random.uniform(jax.random.fold_in(key, step)))(keys_R2)


def _draw_sorted(logits_RC, u_R):
  """Index into the last axis of `logits_RC` drawn by inverse CDF (masked entries: -inf)."""
  probs_RC = jax.nn.softmax(logits_RC.astype(jnp.float32), axis=-1)
  cdf_RC = jnp.cumsum(probs_RC, axis=-1)
  threshold_R = u_R * cdf_RC[:, -1]
  idx_R = jnp.sum(cdf_RC < threshold_R[:, None], axis=-1)
  # Never land on a zero-probability entry through rounding at the end of the cdf.
  last_valid_R = jnp.sum(probs_RC > 0, axis=-1) - 1
  return jnp.minimum(idx_R, jnp.maximum(last_valid_R, 0))


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
    return _draw_sorted(logits_RV / self.temperature, u_R).astype(jnp.int32)


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
    top_logits_RK, top_idx_RK = jax.lax.top_k(logits_RV, k)
    u_R = _uniform_R(keys_R2, step)
    choice_R = _draw_sorted(top_logits_RK / self.temperature, u_R)
    return jnp.take_along_axis(top_idx_RK, choice_R[:, None], axis=-1)[:, 0].astype(jnp.int32)


def _nucleus_mask(sorted_logits_RC, top_p, log_norm_R):
  """Keeps the smallest prefix (in sorted order) whose probability reaches top_p.

  `log_norm_R` is the log-partition of the distribution the nucleus is taken from, which
  for a candidate subset is that of the full vocabulary, not of the subset.
  """
  probs_RC = jnp.exp(sorted_logits_RC - log_norm_R[:, None])
  mass_before_RC = jnp.cumsum(probs_RC, axis=-1) - probs_RC
  return jnp.where(mass_before_RC < top_p, sorted_logits_RC, -jnp.inf)


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
    V = scaled_RV.shape[-1]
    u_R = _uniform_R(keys_R2, step)

    def pick(num_candidates, log_norm_R=None):
      top_RC, idx_RC = jax.lax.top_k(scaled_RV, num_candidates)
      if log_norm_R is None:  # top-k first: the nucleus is taken in the renormalised top-k.
        log_norm_R = jax.nn.logsumexp(top_RC, axis=-1)
      choice_R = _draw_sorted(_nucleus_mask(top_RC, self.p, log_norm_R), u_R)
      return jnp.take_along_axis(idx_RC, choice_R[:, None], axis=-1)[:, 0].astype(jnp.int32)

    if self.top_k is not None:
      return pick(min(self.top_k, V))
    log_norm_R = jax.nn.logsumexp(scaled_RV, axis=-1)
    c = min(_TOP_P_CANDIDATES, V)
    if c == V:
      return pick(V, log_norm_R)
    top_RC = jax.lax.top_k(scaled_RV, c)[0]
    mass_R = jnp.exp(jax.nn.logsumexp(top_RC, axis=-1) - log_norm_R)
    # Within the candidates the nucleus is exact only if it closes inside them.
    return jax.lax.cond(jnp.all(mass_R >= self.p), lambda: pick(c, log_norm_R),
                        lambda: pick(V, log_norm_R))


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
