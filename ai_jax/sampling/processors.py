"""Logits processors over several model streams, as immutable dataclasses:
`processor(logits per stream) -> logits_RV` that the strategy then samples from.

A stream is one model reading one prompt (`decode.Stream`); every stream of a decode
sees the same generated tokens. A processor's fields are its settings, so they can enter a
run's fingerprint (`settings()`), and `num_streams` says how many streams it reads, in
the order the decoder builds them.

Processors are pytrees (flax.struct) whose fields are leaves: the jitted decoder takes the
processor as an argument, so a sweep over gamma and eta compiles once per processor type.
"""

from __future__ import annotations

import math

import flax.struct
import jax
import jax.numpy as jnp


def _check_weight(name: str, value):
  """A Python number must be finite and >= 0; arrays and tracers (the pytree rebuilt
  inside jit) pass as they are."""
  if isinstance(value, (jax.Array, jax.core.Tracer)) or hasattr(value, "dtype"):
    return value
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
      value) or value < 0:
    raise ValueError(f"{name} must be a number >= 0, got {value!r}")
  return float(value)


@flax.struct.dataclass
class FirstStream:
  """The plain decoder: the one stream's logits as they are."""
  num_streams = 1

  def __call__(self, logits):
    return logits[0]

  def settings(self) -> dict:
    return {"name": "plain"}


@flax.struct.dataclass
class Steer:
  """STEER (O'Neill et al. 2023, arXiv 2308.07645), streams (expert on the prompt, base on
  the prompt, expert on the negative prompt):

    s = (1 + gamma) log p_E(x | c) - gamma log p_B(x | c) - eta log p_E(x | n + generated)

  each term a log-softmax over the vocabulary, then renormalised (a log-softmax again), so
  temperature and top-k / top-p act on a distribution, as in the paper."""
  gamma: float = 0.2
  eta: float = 0.6
  num_streams = 3

  def __post_init__(self):
    object.__setattr__(self, "gamma", _check_weight("steer gamma", self.gamma))
    object.__setattr__(self, "eta", _check_weight("steer eta", self.eta))

  def __call__(self, logits):
    expert, base, negative = (jax.nn.log_softmax(x.astype(jnp.float32), axis=-1)
                              for x in logits)
    scores = (1.0 + self.gamma) * expert - self.gamma * base - self.eta * negative
    return jax.nn.log_softmax(scores, axis=-1)

  def settings(self) -> dict:
    return {"name": "steer", "gamma": float(self.gamma), "eta": float(self.eta)}


@flax.struct.dataclass
class ClassifierFreeGuidance:
  """Classifier-free guidance for language models (Sanchez et al. 2023, arXiv 2306.17806),
  streams (the model on the prompt, the same model on the unconditional prompt):

    s = log p(x | unconditional) + scale * (log p(x | c) - log p(x | unconditional))

  scale 1 is plain sampling; > 1 pushes towards the prompt."""
  scale: float = 1.5
  num_streams = 2

  def __post_init__(self):
    object.__setattr__(self, "scale", _check_weight("guidance scale", self.scale))

  def __call__(self, logits):
    cond, uncond = (jax.nn.log_softmax(x.astype(jnp.float32), axis=-1) for x in logits)
    return jax.nn.log_softmax(uncond + self.scale * (cond - uncond), axis=-1)

  def settings(self) -> dict:
    return {"name": "cfg", "scale": float(self.scale)}
