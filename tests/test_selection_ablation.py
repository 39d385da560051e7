"""ai_jax.selection.ablation: the exact best-of-j expectation against brute force over all
j-subsets, its invariants, the prefix estimate, the NaN rule, the bootstrap and the files."""

from __future__ import annotations

import csv
import itertools
import math
import os
from fractions import Fraction

import numpy as np
import pytest

from ai_jax.profiling import stats
from ai_jax.selection import ablation
from ai_jax.selection.candidates import Candidates


def brute_best_of_j(scores, j, maximize=True):
  """Average over every j-subset of the samples of its best finite score, over the subsets
  holding one (the module's NaN rule); NaN when no subset does."""
  best = max if maximize else min
  values = []
  for subset in itertools.combinations(scores, j):
    finite = [s for s in subset if not math.isnan(s)]
    if finite:
      values.append(best(finite))
  return sum(values) / len(values) if values else math.nan


def group(prompt_id, scores, sample_indices=None, teachers=None, metric="m"):
  scores = np.asarray(scores, np.float64)
  n = scores.size
  return Candidates(prompt_id=prompt_id,
                    teachers=tuple(teachers or ["t"] * n),
                    sample_indices=tuple(range(n) if sample_indices is None else sample_indices),
                    scores={metric: scores})


def close(a, b, tol=1e-12):
  return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


# --- exact expectation ---------------------------------------------------------------------


@pytest.mark.parametrize("maximize", [True, False])
def test_exact_equals_brute_force_with_ties_and_negatives(maximize):
  rng = np.random.default_rng(1234)
  for case in range(150):
    k = int(rng.integers(1, 9))
    if case % 3 == 0:  # few distinct values: many ties
      scores = rng.integers(-3, 3, size=k).astype(np.float64)
    else:
      scores = rng.normal(size=k) * 10.0 ** rng.integers(-3, 4) - rng.uniform(0, 5)
    curve = ablation.expected_best_curve(scores, maximize)
    for j in range(1, k + 1):
      want = brute_best_of_j(list(scores), j, maximize)
      assert close(ablation.expected_best_of_j(scores, j, maximize), want), (scores, j)
      assert close(curve[j - 1], want), (scores, j)


@pytest.mark.parametrize("maximize", [True, False])
def test_exact_with_nan_equals_brute_force(maximize):
  rng = np.random.default_rng(99)
  for _ in range(120):
    k = int(rng.integers(1, 9))
    scores = rng.integers(-2, 3, size=k).astype(np.float64) + rng.choice([0.0, 0.5], size=k)
    scores[rng.random(k) < 0.4] = np.nan
    if np.isnan(scores).all():
      assert np.isnan(ablation.expected_best_curve(scores, maximize)).all()
      continue
    for j in range(1, k + 1):
      want = brute_best_of_j(list(scores), j, maximize)
      assert close(ablation.expected_best_of_j(scores, j, maximize), want), (scores, j)


def test_raw_weights_match_brute_force_without_pinning():
  # The curve pins j=1, j=k and monotonicity; the formula itself must be right everywhere.
  rng = np.random.default_rng(5)
  for n in range(1, 9):
    for m in range(1, n + 1):
      w = ablation._weights(n, m)
      assert w.shape == (n, m)
      np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=0, atol=1e-14)
      values = np.sort(rng.normal(size=m))
      scores = list(values) + [math.nan] * (n - m)
      raw = w @ values
      for j in range(1, n + 1):
        assert close(raw[j - 1], brute_best_of_j(scores, j)), (n, m, j)
  np.testing.assert_array_equal(ablation._weights(6, 6)[0], np.full(6, 1 / 6))
  np.testing.assert_array_equal(ablation._weights(6, 6)[-1], [0, 0, 0, 0, 0, 1])


def test_j1_is_mean_jk_is_max_and_monotone():
  rng = np.random.default_rng(0)
  for k in (1, 2, 3, 7, 31, 200):
    for maximize in (True, False):
      scores = rng.normal(size=k) * 3 - 1
      curve = ablation.expected_best_curve(scores, maximize)
      assert curve.shape == (k,)
      # The mean of the sorted scores: equal to np.mean up to summation order.
      assert curve[0] == pytest.approx(np.mean(scores), rel=1e-15, abs=1e-15)
      assert curve[-1] == (scores.max() if maximize else scores.min())
      steps = np.diff(curve)
      assert (steps >= 0).all() if maximize else (steps <= 0).all()
  # Equal values: the curve is exactly that value, although the float mean of 0.1s is not.
  np.testing.assert_array_equal(ablation.expected_best_curve(np.full(3, 0.1)), np.full(3, 0.1))


def test_k200_exact_rational_and_monte_carlo():
  rng = np.random.default_rng(7)
  k = 200
  scores = rng.normal(size=k)
  curve = ablation.expected_best_curve(scores)
  assert np.isfinite(curve).all()
  ordered = sorted(Fraction(float(s)) for s in scores)
  for j in (1, 2, 50, 100, 199, 200):  # C(200, 100) ~ 9e58: exact rationals as the reference
    exact = sum(v * math.comb(i, j - 1) for i, v in enumerate(ordered)) / math.comb(k, j)
    assert close(curve[j - 1], float(exact), 1e-13), j
  mc_rng = np.random.default_rng(11)
  for j in (3, 20, 120):
    picks = np.argsort(mc_rng.random((4000, k)), axis=1)[:, :j]
    estimate = scores[picks].max(axis=1).mean()
    # Sd of a best-of-j draw is < 1 for N(0,1) scores, so the Monte-Carlo error is < 0.016
    # per sd; 0.1 is over 6 sd (and the seed is fixed besides).
    assert abs(estimate - curve[j - 1]) < 0.1, j


def test_k_beyond_float_binomials():
  # C(1100, 550) overflows float64; the scaled integer weights must not.
  scores = np.random.default_rng(3).uniform(size=1100)
  curve = ablation.expected_best_curve(scores)
  assert np.isfinite(curve).all()
  assert curve[0] == pytest.approx(scores.mean(), rel=1e-15) and curve[-1] == scores.max()
  assert (np.diff(curve) >= 0).all()


def test_argument_checks():
  with pytest.raises(ValueError, match="j must be"):
    ablation.expected_best_of_j([1.0, 2.0], 3)
  with pytest.raises(ValueError, match="j must be"):
    ablation.expected_best_of_j([1.0, 2.0], 0)
  with pytest.raises(ValueError, match="j must be"):
    ablation.prefix_best_of_j([1.0], 2)
  with pytest.raises(ValueError, match="1-D"):
    ablation.expected_best_curve(np.ones((2, 2)))
  assert math.isnan(ablation.expected_best_of_j([math.nan, math.nan], 1))


# --- prefix estimate -----------------------------------------------------------------------


def test_prefix_by_hand():
  scores = [0.2, math.nan, 0.9, 0.5]
  np.testing.assert_array_equal(ablation.prefix_best_curve(scores), [0.2, 0.2, 0.9, 0.9])
  np.testing.assert_array_equal(ablation.prefix_best_curve(scores, maximize=False),
                                [0.2, 0.2, 0.2, 0.2])
  np.testing.assert_array_equal(ablation.prefix_best_curve([math.nan, 3.0, -1.0], False),
                                [math.nan, 3.0, -1.0])
  assert ablation.prefix_best_of_j(scores, 3) == 0.9
  assert math.isnan(ablation.prefix_best_of_j([math.nan, 1.0], 1))


def test_table_prefix_follows_sample_index_not_row_order():
  # Rows out of order: sample 0 scores 1, sample 1 scores 5, sample 2 scores 3.
  g = group("p", [3.0, 1.0, 5.0], sample_indices=[2, 0, 1])
  rows = ablation.ablation_table([g], "m", num_bootstrap=0)
  assert [r["prefix_best"] for r in rows] == [1.0, 5.0, 5.0]
  assert [r["expected_best"] for r in rows] == [3.0, pytest.approx(13 / 3, abs=1e-15), 5.0]
  # Two teachers: the prefix grows round robin, (sample_index, teacher) order.
  g2 = group("q", [4.0, 0.0, 9.0, 1.0], sample_indices=[0, 1, 0, 1],
             teachers=["a", "a", "b", "b"])
  rows = ablation.ablation_table([g2], "m", num_bootstrap=0)
  assert [r["prefix_best"] for r in rows] == [4.0, 9.0, 9.0, 9.0]


# --- the table -----------------------------------------------------------------------------


def test_table_nan_rule_and_exclusions():
  groups = [
      group("full", [1.0, 2.0, 3.0, 4.0]),
      group("some_nan", [math.nan, 2.0, math.nan, 6.0]),
      group("no_score", [math.nan] * 4),
      group("short", [10.0, 10.0]),
  ]
  rows = ablation.ablation_table(groups, "m", k_max=4, num_bootstrap=50)
  assert len(rows) == 4
  for r in rows:
    assert (r["num_prompts"], r["num_excluded"]) == (2, 2)
    assert (r["num_excluded_no_score"], r["num_excluded_too_few"]) == (1, 1)
  for j, r in enumerate(rows, 1):
    want = (brute_best_of_j([1, 2, 3, 4], j) + brute_best_of_j([math.nan, 2, math.nan, 6], j)) / 2
    assert close(r["expected_best"], want)
  # Prefix at j=1: "some_nan" has no finite score among its first sample, so it drops out.
  assert rows[0]["prefix_num_prompts"] == 1 and rows[0]["prefix_best"] == 1.0
  assert rows[1]["prefix_num_prompts"] == 2 and rows[1]["prefix_best"] == (2.0 + 2.0) / 2
  assert rows[3]["prefix_best"] == (4.0 + 6.0) / 2
  assert rows[0]["random_baseline"] == rows[0]["expected_best"] == (2.5 + 4.0) / 2
  assert rows[0]["sample_mean"] == pytest.approx((1 + 2 + 3 + 4 + 2 + 6) / 6)
  # Default k_max: the fewest samples among scored prompts, so nobody is excluded as short.
  rows = ablation.ablation_table(groups, "m", num_bootstrap=0)
  assert len(rows) == 2 and rows[0]["num_prompts"] == 3
  assert rows[0]["num_excluded_too_few"] == 0
  with pytest.raises(ValueError, match="no prompt has a finite score"):
    ablation.ablation_table([group("x", [math.nan])], "m")
  with pytest.raises(ValueError, match="no prompt has 9 samples"):
    ablation.ablation_table(groups, "m", k_max=9)
  with pytest.raises(KeyError):
    ablation.ablation_table(groups, "other")


def random_groups(num_prompts, k, seed):
  rng = np.random.default_rng(seed)
  base = rng.normal(size=(num_prompts, 1))
  scores = base + rng.normal(size=(num_prompts, k))
  scores[rng.random((num_prompts, k)) < 0.05] = np.nan
  return [group(f"p{i}", row) for i, row in enumerate(scores)]


def test_bootstrap_ci_contains_estimate_shrinks_and_is_deterministic():
  small = ablation.ablation_table(random_groups(20, 6, seed=1), "m", seed=3)
  large = ablation.ablation_table(random_groups(2000, 6, seed=2), "m", seed=3)
  for rows in (small, large):
    assert [r["j"] for r in rows] == list(range(1, 7))
    for r in rows:
      assert r["expected_best_ci_low"] <= r["expected_best"] <= r["expected_best_ci_high"]
      assert r["prefix_best_ci_low"] <= r["prefix_best"] <= r["prefix_best_ci_high"]
  for s, l in zip(small, large):
    assert (l["expected_best_ci_high"] - l["expected_best_ci_low"]
            < 0.5 * (s["expected_best_ci_high"] - s["expected_best_ci_low"]))
    assert (l["prefix_best_ci_high"] - l["prefix_best_ci_low"]
            < 0.5 * (s["prefix_best_ci_high"] - s["prefix_best_ci_low"]))
  again = ablation.ablation_table(random_groups(20, 6, seed=1), "m", seed=3)
  assert again == small
  other = ablation.ablation_table(random_groups(20, 6, seed=1), "m", seed=4)
  assert other[2]["expected_best_ci_low"] != small[2]["expected_best_ci_low"]
  assert other[2]["expected_best"] == small[2]["expected_best"]
  # Averaged over prompts the exact curve is monotone too, and starts at the baseline.
  means = [r["expected_best"] for r in large]
  assert means == sorted(means) and means[0] == large[0]["random_baseline"]


def test_bootstrap_blocks_and_no_bootstrap():
  groups = random_groups(30, 3, seed=8)
  rows = ablation.ablation_table(groups, "m", num_bootstrap=0)
  assert all(math.isnan(r["expected_best_ci_low"]) for r in rows)
  # Resampled means equal a direct per-resample loop (the counts shortcut is exact).
  exact = np.stack([ablation.expected_best_curve(g.metric("m")) for g in groups])
  boot, _ = ablation._bootstrap_means(exact, exact, 7, seed=0)
  counts = ablation._bootstrap_counts(30, 7, np.random.default_rng(0))
  assert counts.sum(axis=1).tolist() == [30.0] * 7
  for b in range(7):
    direct = np.repeat(exact, counts[b].astype(int), axis=0).mean(axis=0)
    np.testing.assert_allclose(boot[b], direct, rtol=1e-13)


def test_bootstrap_is_the_shared_deterministic_draw(monkeypatch):
  # The ablation resamples with profiling.stats: the same prompt sets as every other
  # interval of the run, and per-row sums, so the block size (a memory bound) changes no
  # digit of an interval, which a BLAS matmul could not promise.
  groups = random_groups(53, 4, seed=9)
  whole = ablation.ablation_table(groups, "m", num_bootstrap=300, seed=2)
  monkeypatch.setattr(stats, "_BLOCK_CELLS", 53 * 7)
  blocks = list(stats.bootstrap_counts(53, 300, seed=2))
  assert [b.shape for b in blocks] == [(7, 53)] * 42 + [(6, 53)]
  np.testing.assert_array_equal(np.concatenate(blocks),
                                stats.resample_counts(53, 300, np.random.default_rng(2)))
  assert ablation.ablation_table(groups, "m", num_bootstrap=300, seed=2) == whole


def test_table_minimise_mirrors_maximise():
  groups = random_groups(40, 5, seed=4)
  negated = [group(g.prompt_id, -g.metric("m")) for g in groups]
  low = ablation.ablation_table(groups, "m", maximize=False, seed=1)
  high = ablation.ablation_table(negated, "m", maximize=True, seed=1)
  for a, b in zip(low, high):
    assert a["expected_best"] == -b["expected_best"]
    assert a["prefix_best"] == -b["prefix_best"]
    assert a["expected_best_ci_low"] == pytest.approx(-b["expected_best_ci_high"], abs=1e-12)
  assert [r["expected_best"] for r in low] == sorted((r["expected_best"] for r in low),
                                                     reverse=True)


# --- files ---------------------------------------------------------------------------------


def test_write_ablation(tmp_path):
  rows = ablation.ablation_table(random_groups(25, 5, seed=6), "m", num_bootstrap=200)
  out_dir = tmp_path / "out"
  paths = ablation.write_ablation(rows, str(out_dir), "m")
  assert sorted(os.listdir(out_dir)) == ["ablation_m.csv", "ablation_m.md", "ablation_m.png"]
  assert paths["png"] == str(out_dir / "ablation_m.png")
  with open(paths["png"], "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with open(paths["csv"], newline="") as f:
    table = list(csv.DictReader(f))
  assert len(table) == 5
  assert [int(r["j"]) for r in table] == [1, 2, 3, 4, 5]
  assert float(table[2]["expected_best"]) == rows[2]["expected_best"]  # full precision
  md = (out_dir / "ablation_m.md").read_text()
  assert "# Best-of-j ablation: m" in md and "95% CI" in md
  assert md.count("\n| ") == 1 + 5  # header row and one row per j
  # Rewriting replaces the files in place, leaving no temp files.
  ablation.write_ablation(rows[:3], str(out_dir), "m")
  assert len(os.listdir(out_dir)) == 3
  with open(paths["csv"]) as f:
    assert len(f.read().splitlines()) == 1 + 3
  with pytest.raises(ValueError, match="file name"):
    ablation.write_ablation(rows, str(out_dir), "../m")
  with pytest.raises(ValueError, match="no rows"):
    ablation.write_ablation([], str(out_dir), "m")
