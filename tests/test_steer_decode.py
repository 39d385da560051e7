"""The batched STEER decoder (several model streams in one jitted loop, each with its own
prefill and KV cache, a per-row negative-prompt stream) against the reference that
recomputes the whole context each step (tests/steer_reference.py), greedy."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ai_jax import models
from ai_jax.sampling import decode, processors, strategies
from steer_reference import steer_greedy

A = 8


def _peaked(params):
  # A final norm scaled 40x gives clear argmax winners (random weights are near-uniform).
  params = jax.tree.map(np.asarray, params)
  return {**params, "final_norm": {"scale": params["final_norm"]["scale"] * 40.0}}


def _left_pad(rows, pad=0):
  T = max(map(len, rows))
  tokens = np.array([[pad] * (T - len(r)) + r for r in rows], np.int32)
  mask = np.array([[False] * (T - len(r)) + [True] * len(r) for r in rows])
  return jnp.asarray(tokens), jnp.asarray(mask)


@pytest.fixture(scope="module")
def two_models(tiny_config, tiny_params):
  return _peaked(tiny_params), _peaked(models.init_params(tiny_config, seed=7))


@pytest.mark.parametrize("gamma, eta", [(0.2, 0.6), (1.0, 0.0), (0.0, 1.0), (0.5, 0.25)])
def test_batched_steer_equals_the_full_recompute_reference(tiny_config, two_models, gamma,
                                                           eta):
  expert, base = two_models
  rng = np.random.default_rng(0)
  contexts = [rng.integers(3, 259, n).tolist() for n in (5, 11, 3)]
  J = 2
  # One negative prompt per row (per sample), of different lengths.
  negatives = [rng.integers(3, 259, n).tolist() for n in (9, 4, 6, 12, 2, 7)]
  ctx_BT, ctx_mask = _left_pad(contexts)
  neg_RT, neg_mask = _left_pad(negatives)
  spec = decode.DecodeSpec(num_samples=J, max_new_tokens=A, stop_ids=(2,), pad_id=0)
  fn = jax.jit(functools.partial(
      decode.generate_streams, configs=(tiny_config, tiny_config), spec=spec,
      streams=(decode.Stream(0), decode.Stream(1), decode.Stream(0, per_row=True)),
      strategy=strategies.Greedy(), processor=processors.Steer(gamma, eta)))
  out = fn((expert, base), (ctx_BT, ctx_BT, neg_RT), (ctx_mask, ctx_mask, neg_mask),
           jnp.arange(3, dtype=jnp.uint32), 0)
  tokens_RA, num_R = np.asarray(out["tokens_RA"]), np.asarray(out["num_tokens_R"])
  got = [tokens_RA[r, :num_R[r]].tolist() for r in range(len(negatives))]
  want = [steer_greedy(expert, base, tiny_config, contexts[r // J], negatives[r], gamma=gamma,
                       eta=eta, max_new_tokens=A, stop_ids=(2,))
          for r in range(len(negatives))]
  assert got == want
  assert len({tuple(g) for g in got}) > 1  # the rows are not one degenerate answer
  # The guidance acts: some row differs from the expert's own greedy answer.
  plain = [steer_greedy(expert, base, tiny_config, contexts[r // J], negatives[r], gamma=0.0,
                        eta=0.0, max_new_tokens=A, stop_ids=(2,))
           for r in range(len(negatives))]
  assert got != plain


def test_one_stream_equals_the_plain_decoder(tiny_config, two_models):
  expert, _ = two_models
  ctx_BT, ctx_mask = _left_pad([[5, 6, 7], [9, 10, 11, 12, 13]])
  spec = decode.DecodeSpec(num_samples=2, max_new_tokens=A, stop_ids=(2,), pad_id=0)
  strategy = strategies.Temperature(1.0)
  plain = decode.compiled_generate(tiny_config, spec, strategy, None)(
      expert, ctx_BT, ctx_mask, jnp.arange(2, dtype=jnp.uint32), 3)
  # Guidance scale 1 and STEER at gamma = eta = 0 are the plain decoder too (to float noise).
  for processor, streams, n in [
      (processors.ClassifierFreeGuidance(1.0), (decode.Stream(0), decode.Stream(0)), 2),
      (processors.Steer(0.0, 0.0), (decode.Stream(0), decode.Stream(0), decode.Stream(0)), 3)]:
    out = jax.jit(functools.partial(
        decode.generate_streams, configs=(tiny_config,), streams=streams, spec=spec,
        strategy=strategy, processor=processor))(
        (expert,), (ctx_BT,) * n, (ctx_mask,) * n, jnp.arange(2, dtype=jnp.uint32), 3)
    np.testing.assert_array_equal(out["tokens_RA"], plain["tokens_RA"])


def test_processor_settings_are_checked():
  with pytest.raises(ValueError, match="steer gamma must be a number >= 0"):
    processors.Steer(gamma=-0.1)
  with pytest.raises(ValueError, match="steer eta"):
    processors.Steer(eta=float("nan"))
  assert processors.Steer(0.2, 0.6).settings() == {"name": "steer", "gamma": 0.2, "eta": 0.6}
