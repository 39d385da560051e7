"""A reference STEER decoder written the way the authors' code works (O'Neill et al. 2023):
one sequence at a time, no KV cache, the whole context recomputed by a full forward at every
step. Kept with the tests (never used by the library): the batched, cached decoder in
`ai_jax.sampling.decode.generate_streams` must give the same tokens under a deterministic
strategy."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ai_jax.sampling import decode


@functools.partial(jax.jit, static_argnames=("config",))
def _last_logits(params, tokens_1T, *, config):
  return decode.forward_logits(params, tokens_1T, config=config)[0, -1]


def steer_greedy(expert, base, config, context: list[int], negative: list[int], *,
                 gamma: float, eta: float, max_new_tokens: int, stop_ids=()) -> list[int]:
  """Greedy STEER tokens for one prompt: argmax of the renormalised
  (1 + gamma) log p_E(x | c) - gamma log p_B(x | c) - eta log p_E(x | n + generated)."""
  generated: list[int] = []
  for _ in range(max_new_tokens):
    logp = lambda params, prefix: np.asarray(jax.nn.log_softmax(  # noqa: E731
        _last_logits(params, jnp.asarray([prefix + generated], jnp.int32), config=config)))
    scores = ((1 + gamma) * logp(expert, context) - gamma * logp(base, context)
              - eta * logp(expert, negative))
    token = int(np.argmax(scores))
    if token in stop_ids:
      break
    generated.append(token)
  return generated
