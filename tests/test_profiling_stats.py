"""ai_jax.profiling.stats: bootstrap intervals over prompts (value, width, coverage), NaN
handling, pairing by prompt id, percent change, determinism and the toxicity protocol."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from ai_jax.profiling import stats


def test_bootstrap_mean_value_and_width():
  values_P = np.random.default_rng(1).standard_normal(400)
  est = stats.bootstrap_mean(values_P, num_bootstrap=2000, seed=0)
  assert est.value == pytest.approx(float(np.mean(values_P)), abs=1e-15)
  assert est.n == 400 and est.n_missing == 0
  assert est.low < est.value < est.high
  half_width = (est.high - est.low) / 2
  expected = 1.96 / math.sqrt(400)
  assert abs(half_width - expected) / expected < 0.25


def test_bootstrap_mean_coverage():
  # Exponential(1): skewed, true mean 1. 200 seeded repetitions of n=50.
  rng = np.random.default_rng(123)
  covered = 0
  for rep in range(200):
    est = stats.bootstrap_mean(rng.exponential(1.0, size=50), num_bootstrap=1000, seed=rep)
    covered += est.low <= 1.0 <= est.high
  assert 0.88 <= covered / 200 <= 0.99


def test_bootstrap_mean_nan_inf_and_degenerate():
  est = stats.bootstrap_mean([1.0, np.nan, 3.0, np.inf, -np.inf, 2.0], seed=0)
  assert (est.value, est.n, est.n_missing) == (2.0, 3, 3)
  assert est.low is not None and est.high is not None
  none = stats.bootstrap_mean([np.nan, np.nan])
  assert (none.value, none.low, none.high, none.n, none.n_missing) == (None, None, None, 0, 2)
  one = stats.bootstrap_mean([np.nan, 5.0])
  assert (one.value, one.low, one.high, one.n, one.n_missing) == (5.0, None, None, 1, 1)
  empty = stats.bootstrap_mean([])
  assert empty.value is None and empty.n == 0
  assert stats.bootstrap_mean([1.0, 2.0], num_bootstrap=0).low is None
  assert stats.bootstrap_mean([None, 4.0, 6.0]).n_missing == 1
  with pytest.raises(ValueError, match="1-D"):
    stats.bootstrap_mean(np.ones((3, 2)))
  d = stats.bootstrap_mean({"a": 1.0, "b": None, "c": 2.0}).to_dict()
  assert set(d) == {"value", "low", "high", "n", "n_missing"}
  assert d["value"] == 1.5 and d["n_missing"] == 1
  assert stats.Estimate.from_dict(d) == stats.bootstrap_mean({"a": 1.0, "b": None, "c": 2.0})


def test_bootstrap_mean_rejects_bad_options():
  with pytest.raises(ValueError, match="confidence"):
    stats.bootstrap_mean([1.0, 2.0], confidence=1.0)
  with pytest.raises(ValueError, match="num_bootstrap"):
    stats.bootstrap_mean([1.0, 2.0], num_bootstrap=-1)


def test_bootstrap_determinism_and_common_resamples():
  values_P = np.random.default_rng(2).normal(size=30)
  a = stats.bootstrap_mean(values_P, seed=7)
  assert a == stats.bootstrap_mean(values_P, seed=7)
  assert a != stats.bootstrap_mean(values_P, seed=8)
  # Same resamples for any metric on the same prompts: an affine map of the values maps
  # the interval exactly (up to rounding), which fails if the draw depended on the values.
  b = stats.bootstrap_mean(3.0 * values_P + 1.0, seed=7)
  assert b.low == pytest.approx(3.0 * a.low + 1.0, abs=1e-12)
  assert b.high == pytest.approx(3.0 * a.high + 1.0, abs=1e-12)
  # Dict order does not matter: values are taken in sorted id order.
  by_id = {f"p{i:02d}": float(v) for i, v in enumerate(values_P)}
  items = list(by_id.items())
  random.Random(0).shuffle(items)
  assert stats.bootstrap_mean(dict(items), seed=7) == stats.bootstrap_mean(by_id, seed=7)


def test_chunked_draw_matches_single_block(monkeypatch):
  values_P = np.random.default_rng(3).normal(size=40)
  whole = stats.bootstrap_mean(values_P, num_bootstrap=500, seed=4)
  # A different block size changes only how the same stream of draws is cut.
  monkeypatch.setattr(stats, "_BLOCK_CELLS", 40 * 7)
  assert stats.bootstrap_mean(values_P, num_bootstrap=500, seed=4) == whole


def _correlated_arms(n=200, seed=5):
  rng = np.random.default_rng(seed)
  difficulty_P = rng.normal(0.0, 5.0, size=n)
  a = {f"p{i}": float(10.0 + d + rng.normal(0, 0.3)) for i, d in enumerate(difficulty_P)}
  b = {f"p{i}": float(9.5 + d + rng.normal(0, 0.3)) for i, d in enumerate(difficulty_P)}
  return a, b


def test_paired_difference_value_pct_and_pairing():
  a = {"x": 2.0, "y": 4.0, "z": 6.0, "only_a": 100.0, "nan_a": math.nan}
  b = {"z": 4.0, "y": 2.0, "x": 1.0, "only_b": -50.0, "nan_a": 1.0}
  out = stats.paired_difference(a, b, num_bootstrap=500, seed=0)
  assert out["n_paired"] == 3
  diff, pct = out["diff"], out["pct"]
  assert diff.value == pytest.approx(12.0 / 3 - 7.0 / 3)
  assert pct.value == pytest.approx(100.0 * (12.0 - 7.0) / 7.0)
  assert diff.n == 3 and diff.n_missing == 3  # only_a, only_b, nan_a
  assert diff.low <= diff.value <= diff.high
  assert pct.low <= pct.value <= pct.high
  # Dict order changes nothing; pairing is by id.
  shuffled_a = dict(reversed(list(a.items())))
  assert stats.paired_difference(shuffled_a, b, num_bootstrap=500, seed=0) == out
  # Negative base mean: the percentage is relative to |mean(b)|, so its sign is diff's.
  neg = stats.paired_difference({"p": -1.0, "q": -1.0}, {"p": -2.0, "q": -2.0})
  assert neg["pct"].value == pytest.approx(50.0)


def test_paired_ci_narrower_than_unpaired():
  a, b = _correlated_arms()
  paired = stats.paired_difference(a, b, num_bootstrap=1000, seed=0)["diff"]
  assert paired.low < 0.5 < paired.high
  # Unpaired: each arm resampled on its own (independent seeds).
  ids = sorted(a)
  means_a = stats._replicate_means(np.array([[a[k]] for k in ids]), 1000, 1)[:, 0]
  means_b = stats._replicate_means(np.array([[b[k]] for k in ids]), 1000, 2)[:, 0]
  low, high = np.quantile(means_a - means_b, [0.025, 0.975])
  assert (paired.high - paired.low) < 0.3 * (high - low)


def test_paired_difference_zero_base_and_errors():
  out = stats.paired_difference({"p": 1.0, "q": 2.0}, {"p": 0.0, "q": 0.0})
  assert out["diff"].value == 1.5
  assert (out["pct"].value, out["pct"].low, out["pct"].high) == (None, None, None)
  # b nonzero on one prompt of two: resamples drawing only "p" have mean(b) == 0.
  some = stats.paired_difference({"p": 1.0, "q": 2.0}, {"p": 0.0, "q": 1.0},
                                 num_bootstrap=1000, seed=0)
  assert 150 < some["pct_dropped_replicates"] < 350
  assert some["pct"].value == pytest.approx(100.0 * 1.0 / 0.5)
  with pytest.raises(ValueError, match=r"a has 2 prompts.*b has 1 .*0 prompt ids shared"):
    stats.paired_difference({"p": 1.0, "q": 2.0}, {"r": 1.0, "s": math.nan})
  single = stats.paired_difference({"p": 1.0}, {"p": 3.0})
  assert single["diff"].value == -2.0 and single["diff"].low is None


def test_paired_difference_determinism():
  a, b = _correlated_arms(n=50)
  first = stats.paired_difference(a, b, num_bootstrap=300, seed=3)
  assert first == stats.paired_difference(a, b, num_bootstrap=300, seed=3)
  assert first != stats.paired_difference(a, b, num_bootstrap=300, seed=4)
  as_json = stats.jsonable(first)
  assert as_json["diff"] == first["diff"].to_dict() and as_json["n_paired"] == 50


ROWS = [
    {"prompt_id": "a", "sample_index": 0, "tox": 0.1},
    {"prompt_id": "a", "sample_index": 1, "tox": 0.7},
    {"prompt_id": "b", "sample_index": 0, "tox": 0.2},
    {"prompt_id": "b", "sample_index": 1, "tox": None},
    {"prompt_id": "c", "sample_index": 0, "tox": None},
    {"prompt_id": "c", "sample_index": 1, "tox": None},
]


def test_per_prompt_reductions():
  means = stats.per_prompt_mean(ROWS, "tox")
  assert means["a"] == pytest.approx(0.4) and means["b"] == 0.2 and math.isnan(means["c"])
  maxes = stats.max_per_prompt(ROWS, "tox")
  assert maxes["a"] == 0.7 and maxes["b"] == 0.2 and math.isnan(maxes["c"])
  hits = stats.any_at_least(ROWS, "tox", threshold=0.5)
  assert hits["a"] == 1.0 and hits["b"] == 0.0 and math.isnan(hits["c"])
  assert stats.any_at_least(ROWS, "tox", threshold=0.7)["a"] == 1.0  # >= threshold
  assert stats.any_at_least(ROWS, "tox", threshold=0.71)["a"] == 0.0
  with pytest.raises(ValueError, match="no column 'toxicity'"):
    stats.per_prompt_mean(ROWS, "toxicity")


def test_toxicity_protocol():
  emt = stats.expected_max_toxicity(ROWS, "tox", num_bootstrap=500, seed=0)
  assert emt.value == pytest.approx(0.45)
  assert (emt.n, emt.n_missing) == (2, 1)
  assert 0.2 <= emt.low <= emt.high <= 0.7
  prob = stats.toxicity_probability(ROWS, "tox", num_bootstrap=500, seed=0)
  assert prob.value == 0.5 and (prob.n, prob.n_missing) == (2, 1)
  assert 0.0 <= prob.low <= prob.high <= 1.0
  # Row order does not matter.
  assert stats.expected_max_toxicity(ROWS[::-1], "tox", num_bootstrap=500, seed=0) == emt
