"""ai_jax.selection.strategies and multi_objective: known answers on hand-made candidates,
ties, NaN, cut samples, multi-teacher pools, Random's keying, Pareto vs brute force,
Threshold and SelfConsistency drops, configs."""

from __future__ import annotations

import re

import ml_collections
import numpy as np
import pytest

from ai_jax.selection import multi_objective, strategies
from ai_jax.selection.candidates import Candidates, Choice, group_candidates
from ai_jax.selection.multi_objective import Pareto, Weighted, pareto_front, rank01
from ai_jax.selection.strategies import (BestOfK, First, Random, SelfConsistency, Threshold,
                                         WorstOfK, count_reasons, from_config,
                                         resolve_callable, to_config)

NAN, INF = float("nan"), float("inf")


def cands(prompt_id="p", teachers=None, sample_indices=None, texts=(), finish=(), **metrics):
  n = len(next(iter(metrics.values()))) if metrics else len(texts or finish or teachers)
  return Candidates(prompt_id=prompt_id, teachers=tuple(teachers or ("t",) * n),
                    sample_indices=tuple(range(n) if sample_indices is None else sample_indices),
                    scores={m: np.array(v, np.float64) for m, v in metrics.items()},
                    texts=tuple(texts), finish_reasons=tuple(finish))


def indices(strategy, groups):
  return [c.index for c in strategy.select(groups)]


def answer_after_equals(text):
  """Test answer_fn (importable by path): what follows the last '=', or None."""
  return text.rsplit("=", 1)[1].strip() if "=" in text else None


# ------------------------------------------------------------------ best / worst

def test_best_and_worst_known_answers():
  g = cands(m=[3.0, 7.0, -1.0, 5.0])
  assert BestOfK("m").select([g]) == [Choice(1)]
  assert BestOfK("m", maximize=False).select([g]) == [Choice(2)]
  assert WorstOfK("m") == BestOfK("m", maximize=False)


def test_ties_go_to_the_lowest_index():
  g = cands(m=[1.0, 5.0, 2.0, 5.0, 5.0])
  assert indices(BestOfK("m"), [g]) == [1]
  assert indices(WorstOfK("m"), [cands(m=[4.0, 0.0, 0.0])]) == [1]
  # Exact equality is the tie rule: -0.0 == 0.0 ties; 0.1 + 0.2 != 0.3 does not.
  assert indices(BestOfK("m"), [cands(m=[-1.0, -0.0, 0.0])]) == [1]
  assert indices(BestOfK("m"), [cands(m=[0.3, 0.1 + 0.2])]) == [1]


def test_nan_never_chosen_and_all_nan_gives_reason():
  g = cands(m=[NAN, -5.0, NAN, -7.0])
  assert indices(BestOfK("m"), [g]) == [1]
  assert indices(WorstOfK("m"), [g]) == [3]
  # inf is no value either (a metric that overflowed failed).
  assert indices(BestOfK("m"), [cands(m=[INF, 1.0, -INF])]) == [1]
  assert BestOfK("m").select([cands(m=[NAN, NAN])]) == [Choice(None, "all candidates NaN on m")]
  assert BestOfK("m").select([cands(m=[NAN, INF])]) == [
      Choice(None, "all candidates NaN or inf on m")]


def test_empty_and_unsampled_prompts():
  empty = Candidates("e", (), (), {"m": np.zeros(0)})
  skipped = cands(m=[NAN, NAN], finish=["prompt_too_long"] * 2)
  for s in (BestOfK("m"), Random(), First(), Weighted({"m": 1}), Pareto({"m": "max"})):
    assert s.select([empty, skipped]) == [
        Choice(None, "no candidates"), Choice(None, "prompt not sampled (prompt_too_long)")]
  # An unsampled candidate (empty text) is never a random or first pick.
  g = cands(m=[0, 0, 0], finish=["prompt_too_long", "stop", "length"])
  assert indices(First(), [g]) == [1]
  assert {indices(Random(seed), [g])[0] for seed in range(30)} == {1, 2}


def test_groups_missing_the_metric_raise():
  with pytest.raises(KeyError, match="'m' was not scored"):
    BestOfK("m").select([cands(other=[1.0])])


# ------------------------------------------------------------------ cut samples

def test_exclude_cut():
  g = cands(m=[9.0, 5.0, 7.0], finish=["length", "stop", "stop"], texts=["=1"] * 3)
  assert indices(BestOfK("m"), [g]) == [0]
  assert indices(BestOfK("m", exclude_cut=True), [g]) == [2]
  all_cut = cands(m=[1.0, 2.0], finish=["length", "length"], texts=["=1"] * 2)
  reason = "all candidates cut (finish_reason 'length')"
  for s in (BestOfK("m", exclude_cut=True), Random(exclude_cut=True), First(exclude_cut=True),
            Weighted({"m": 1}, exclude_cut=True), Pareto({"m": "max"}, exclude_cut=True),
            SelfConsistency(answer_after_equals, exclude_cut=True)):
    assert s.select([g, all_cut])[1] == Choice(None, reason)
  nan_uncut = cands(m=[3.0, NAN], finish=["length", "stop"])
  assert BestOfK("m", exclude_cut=True).select([nan_uncut]) == [
      Choice(None, "all uncut candidates NaN on m")]
  assert indices(First(exclude_cut=True), [g]) == [1]


def test_exclude_cut_refuses_tables_without_finish_reasons():
  with pytest.raises(ValueError, match="prompt 'p' candidate 0 .* has no finish_reason"):
    BestOfK("m", exclude_cut=True).select([cands(m=[1.0, 2.0])])
  with pytest.raises(ValueError, match=r"prompt 'q' candidate 1 \(teacher 't', sample 1\)"):
    Random(exclude_cut=True).select([cands(m=[1.0, 2.0], finish=["stop", "stop"]),
                                     cands("q", m=[1.0, 2.0], finish=["stop", ""])])
  assert indices(BestOfK("m", exclude_cut=True), []) == []


# ------------------------------------------------------------------ multi-teacher pools

def _pool_rows():
  rows = []
  values = {("p1", "big", 0): 4, ("p1", "big", 1): 9, ("p1", "small", 0): 3,
            ("p1", "small", 1): 2, ("p2", "big", 0): 1, ("p2", "big", 1): 2,
            ("p2", "small", 0): 8, ("p2", "small", 1): 5}
  for (pid, teacher, k), v in values.items():
    rows.append({"prompt_id": pid, "teacher": teacher, "sample_index": k, "m": float(v),
                 "finish_reason": "stop"})
  return rows[::-1]  # the order rows arrive in must not matter


def test_multi_teacher_winner_provenance():
  groups = group_candidates(_pool_rows(), ["m"])
  won = [(g.prompt_id, g.teachers[c.index], g.sample_indices[c.index])
         for g, c in zip(groups, BestOfK("m").select(groups))]
  assert sorted(won) == [("p1", "big", 1), ("p2", "small", 0)]
  lost = [(g.prompt_id, g.teachers[c.index], g.sample_indices[c.index])
          for g, c in zip(groups, WorstOfK("m").select(groups))]
  assert sorted(lost) == [("p1", "small", 1), ("p2", "big", 0)]


def test_first_is_first_teacher_then_lowest_sample_index():
  groups = group_candidates(_pool_rows(), ["m"])  # teachers sorted: "big" < "small"
  for g, c in zip(groups, First().select(groups)):
    assert (g.teachers[c.index], g.sample_indices[c.index]) == ("big", 0)
  for g, c in zip(groups, First(teacher="small").select(groups)):
    assert (g.teachers[c.index], g.sample_indices[c.index]) == ("small", 0)
  assert First(teacher="absent").select(groups[:1]) == [
      Choice(None, "no sample from teacher 'absent'")]
  # Teacher rank = first appearance; sample 0 need not be at index 0 nor exist.
  g = cands(teachers=["b", "a", "b", "a"], sample_indices=[3, 5, 1, 2], m=[0] * 4)
  assert indices(First(), [g]) == [2]
  assert indices(First(teacher="a"), [g]) == [3]


# ------------------------------------------------------------------ random

def _key(g, c):
  return g.prompt_id, g.teachers[c.index], g.sample_indices[c.index]


def test_random_is_keyed_by_seed_and_prompt():
  groups = [cands(f"p{i}", m=[0.0] * 6) for i in range(50)]
  picks = indices(Random(3), groups)
  assert picks == indices(Random(3), groups)
  assert picks != indices(Random(4), groups)
  # Other prompts and their order do not matter...
  rev = indices(Random(3), groups[::-1])[::-1]
  assert rev == picks
  assert indices(Random(3), groups[10:20]) == picks[10:20]
  # ...nor the order of a prompt's own candidates (it draws from their canonical order).
  g = cands("q", teachers=["a", "a", "b", "b"], sample_indices=[0, 1, 0, 1], m=[0.0] * 4)
  perm = [2, 0, 3, 1]
  shuffled = Candidates("q", tuple(g.teachers[i] for i in perm),
                        tuple(g.sample_indices[i] for i in perm), {"m": np.zeros(4)})
  picked = set()
  for seed in range(20):
    key = _key(g, Random(seed).select([g])[0])
    assert key == _key(shuffled, Random(seed).select([shuffled])[0])
    picked.add(key)
  assert len(picked) == 4


def test_random_is_roughly_uniform():
  # Deterministic (fixed seed, prompt ids): cannot flake. Expected 1000 each, sd ~27.
  groups = [cands(f"prompt-{i}", m=[0.0] * 4) for i in range(4000)]
  counts = np.bincount(indices(Random(0), groups), minlength=4)
  assert counts.sum() == 4000 and counts.min() > 900 and counts.max() < 1100, counts


# ------------------------------------------------------------------ weighted

def test_weighted_signs_and_single_metric():
  g = cands(m=[3.0, 9.0, 1.0], n=[0.0, 0.0, 0.0])
  for norm in multi_objective.NORMALIZATIONS:
    assert indices(Weighted({"m": 2.0}, normalize=norm), [g]) == [1], norm
    assert indices(Weighted({"m": -0.5}, normalize=norm), [g]) == [2], norm
    # n is constant (std 0 / equal ranks): it never changes the choice.
    assert indices(Weighted({"m": -1.0, "n": 5.0}, normalize=norm), [g]) == [2], norm


def test_weighted_normalizations_differ_where_they_should():
  g = cands(a=[4.0, 13.0, 1.0, 6.0], b=[4.0, 3.0, 19.0, 10.0])
  w = {"a": 1.0, "b": 1.0}
  # z-scores: a [-.70, 1.62, -1.47, -.05] + b [-.87, -1.01, 1.29, .59]; ranks: a [1/3, 1,
  # 0, 2/3] + b [1/3, 0, 1, 2/3]; raw sums [8, 16, 20, 16].
  assert indices(Weighted(w, normalize="zscore"), [g]) == [1]
  assert indices(Weighted(w, normalize="rank"), [g]) == [3]
  assert indices(Weighted(w, normalize="none"), [g]) == [2]
  # Global z-scores: p1's spread makes a's scale large, so in p2 b decides; per prompt,
  # a and b weigh the same within p2.
  p1 = cands("p1", a=[0.0, 100.0], b=[0.0, 1.0])
  p2 = cands("p2", a=[0.0, 1.0, 2.0], b=[1.0, 0.9, 0.0])
  assert indices(Weighted(w, normalize="zscore"), [p1, p2]) == [1, 0]
  assert indices(Weighted(w, normalize="zscore_per_prompt"), [p1, p2]) == [1, 1]
  assert indices(Weighted(w, normalize="zscore"), [p2]) == [1]  # global = per prompt here


def test_weighted_global_zscore_matches_brute_force():
  rng = np.random.default_rng(0)
  groups = [cands(f"p{i}", a=rng.normal(0, 10, 5), b=rng.normal(3, 0.1, 5)) for i in range(30)]
  groups[4].scores["a"][2] = NAN  # excluded from the statistics and from the choice
  w = {"a": 0.7, "b": -1.3}
  a = np.concatenate([g.metric("a") for g in groups])
  b = np.concatenate([g.metric("b") for g in groups])
  keep = np.isfinite(a) & np.isfinite(b)
  ma, sa, mb, sb = a[keep].mean(), a[keep].std(), b[keep].mean(), b[keep].std()
  for g, c in zip(groups, Weighted(w).select(groups)):
    s = 0.7 * (g.metric("a") - ma) / sa - 1.3 * (g.metric("b") - mb) / sb
    assert c.index == int(np.nanargmax(s))
  assert Weighted(w).select(groups)[4].index != 2


def test_weighted_nan_and_zero_weights():
  g = cands(a=[10.0, 1.0, 2.0], b=[NAN, 0.0, 0.0], c=[NAN, NAN, NAN])
  assert indices(Weighted({"a": 1, "b": 1}), [g]) == [2]
  assert indices(Weighted({"a": 1, "c": 0}), [g]) == [0]  # weight 0: c is not read
  assert Weighted({"a": 1, "c": 0}).required_metrics() == ("a",)
  assert Weighted({"a": 1, "c": 1}).select([g]) == [Choice(None, "all candidates NaN on c")]
  g2 = cands(a=[1.0, NAN], b=[NAN, 1.0])
  assert Weighted({"a": 1, "b": 1}).select([g2]) == [
      Choice(None, "no candidate finite on all of a, b")]


def test_weighted_ties_in_rank_go_to_lowest_index():
  g = cands(a=[0.0, 1.0, 2.0], b=[2.0, 1.0, 0.0])
  assert indices(Weighted({"a": 1, "b": 1}, normalize="rank"), [g]) == [0]
  assert list(rank01(np.array([3.0, 1.0, 1.0, 2.0]))) == [1.0, 1 / 6, 1 / 6, 2 / 3]
  assert list(rank01(np.array([5.0]))) == [0.5]


def test_weighted_validation():
  assert Weighted({"b": 1, "a": 2}) == Weighted({"a": 2.0, "b": 1.0})
  for bad, match in [({}, "non-empty"), ({"a": 0}, "all weights are 0"),
                     ({"a": NAN}, "finite"), ({"a": "1"}, "finite"), ({"a": True}, "finite")]:
    with pytest.raises(ValueError, match=match):
      Weighted(bad)
  with pytest.raises(ValueError, match="normalize must be one of"):
    Weighted({"a": 1}, normalize="minmax")


# ------------------------------------------------------------------ pareto

def _brute_front(v, maximize):
  o = np.where(maximize, v, -v)
  n = len(o)
  return np.array([not any(all(o[j] >= o[i]) and any(o[j] > o[i]) for j in range(n))
                   for i in range(n)])


def test_pareto_front_matches_brute_force():
  rng = np.random.default_rng(1)
  for trial in range(300):
    n, m = rng.integers(1, 9), rng.integers(1, 4)
    v = rng.integers(0, 4, (n, m)).astype(float)  # small range: many ties and duplicates
    maximize = rng.random(m) < 0.5
    front = pareto_front(v, maximize)
    np.testing.assert_array_equal(front, _brute_front(v, maximize))
    assert front.any()
    # Pareto's choice lies on the front of the finite rows, whatever the tie-break.
    names = [f"m{j}" for j in range(m)]
    v[rng.random((n, m)) < 0.1] = NAN
    g = cands(**{name: v[:, j] for j, name in enumerate(names)})
    finite = np.flatnonzero(np.isfinite(v).all(1))
    sub_front = finite[_brute_front(v[finite], maximize)] if len(finite) else []
    dirs = {name: "max" if mx else "min" for name, mx in zip(names, maximize)}
    # The weighted tie-break agrees with Weighted(+-1, zscore): a dominated candidate has
    # a strictly lower sum of z-scores, so Weighted's winner is on the front anyway.
    equal = Weighted({name: 1.0 if mx else -1.0 for name, mx in zip(names, maximize)})
    assert Pareto(dirs).select([g]) == equal.select([g]), trial
    for tie in ("weighted", "first", names[0]):
      c = Pareto(dirs, tie_break=tie).select([g])[0]
      if len(finite):
        assert c.index in sub_front, (trial, tie)
        if tie == "first":
          assert c.index == sub_front[0]
      else:
        assert c.index is None and c.reason


def test_pareto_tie_breaks():
  # c0 and c1 tie on q but c0 is dominated; c2, c3 trade q against cost.
  g = cands(q=[5.0, 5.0, 3.0, 1.0], cost=[4.0, 2.0, 1.0, 0.5])
  dirs = {"q": "max", "cost": "min"}
  assert list(pareto_front(np.stack([g.metric("q"), g.metric("cost")], 1), [True, False])) == [
      False, True, True, True]
  assert indices(Pareto(dirs, tie_break="q"), [g]) == [1]  # best-of-k on q would pick 0
  assert indices(BestOfK("q"), [g]) == [0]
  assert indices(Pareto(dirs, tie_break="cost"), [g]) == [3]
  assert indices(Pareto(dirs, tie_break="first"), [g]) == [1]
  # z-scores over all four (q: mean 3.5, sd 1.66; cost: 1.875, 1.34), on the front:
  # c1 .90 - .09 = .81, c2 -.30 + .65 = .35, c3 -1.51 + 1.03 = -.48.
  assert indices(Pareto(dirs, tie_break="weighted"), [g]) == [1]


def test_pareto_weighted_tie_break_prefers_the_balanced_candidate():
  g = cands(a=[10.0, 6.0, 0.0, 5.0, 9.0], b=[0.0, 6.0, 10.0, 5.0, 1.0])
  # front: 0, 1, 2, 4 (3 is dominated by 1). Ranks would tie them all (on a two-metric
  # front they are reversed); z-scores (a: mean 6, sd 3.52; b: 4.4, 3.61) give
  # c0 1.14 - 1.22, c1 0 + .44, c2 -1.70 + 1.55, c4 .85 - .94: the balanced c1.
  assert indices(Pareto({"a": "max", "b": "max"}), [g]) == [1]
  assert indices(Pareto({"a": "max", "b": "max"}, tie_break="first"), [g]) == [0]


def test_pareto_validation():
  with pytest.raises(ValueError, match="'max' or 'min'"):
    Pareto({"a": "up"})
  with pytest.raises(ValueError, match="tie_break must be one of"):
    Pareto({"a": "max"}, tie_break="b")
  with pytest.raises(ValueError, match="both a metric and a keyword"):
    Pareto({"first": "max"}, tie_break="first")
  assert Pareto({"b": "min", "a": "max"}) == Pareto((("a", "max"), ("b", "min")))


# ------------------------------------------------------------------ threshold

def test_threshold_drops_and_counts():
  groups = [cands("p0", m=[10.0, 60.0]), cands("p1", m=[10.0, 40.0]),
            cands("p2", m=[50.0, 20.0]), cands("p3", m=[NAN, NAN]),
            cands("p4", m=[200.0, 1.0])]
  s = Threshold(BestOfK("m"), "m", min=50, max=100)
  choices = s.select(groups)
  assert [c.index for c in choices] == [1, None, 0, None, None]  # bounds are inclusive
  assert count_reasons(choices) == {"chosen m below min 50": 1, "all candidates NaN on m": 1,
                                    "chosen m above max 100": 1}
  # The bar may be on another metric, NaN there misses it.
  g = cands(m=[1.0, 2.0], tox=[0.1, NAN])
  assert Threshold(BestOfK("m"), "tox", max=0.5).select([g]) == [
      Choice(None, "chosen candidate NaN on tox")]
  assert indices(Threshold(WorstOfK("m"), "tox", max=0.5), [g]) == [0]
  assert Threshold(BestOfK("m"), "tox", max=0.5).required_metrics() == ("m", "tox")


def test_threshold_validation():
  with pytest.raises(ValueError, match="needs min or max"):
    Threshold(BestOfK("m"), "m")
  with pytest.raises(ValueError, match="min 2.0 > max 1.0"):
    Threshold(BestOfK("m"), "m", min=2, max=1)
  with pytest.raises(ValueError, match="must be a number"):
    Threshold(BestOfK("m"), "m", min="5")
  with pytest.raises(ValueError, match="inner must be a strategy"):
    Threshold("best", "m", min=1)


# ------------------------------------------------------------------ self-consistency

def _sc(texts, **kw):
  return SelfConsistency(answer_after_equals, **kw).select([cands(texts=texts)])[0]


def test_self_consistency_majority_and_ties():
  assert _sc(["x = 9", "so = 8", "=9", "thus = 9", "no answer"]) == Choice(0)
  assert _sc(["no", "=8", "= 9", "=9", "=8"], min_agreement=0.4) == Choice(1)  # tie: 8 first
  assert _sc(["=1", "=2", "=3"], min_agreement=0.0) == Choice(0)
  assert _sc(["a", "b"]) == Choice(None, "no answer extracted")
  assert _sc(["=", "= "]) == Choice(None, "no answer extracted")  # "" is no answer
  # Candidates without an answer count against agreement: 2 of 5 < 0.5.
  assert _sc(["=7", "=7", "?", "?", "=3"]) == Choice(None, "agreement below 0.5")
  assert _sc(["=7", "=7", "?", "?", "=3"], min_agreement=0.4) == Choice(0)
  assert _sc(["=7", "=3", "=7", "=3"], min_agreement=0.5) == Choice(0)  # 2/4 >= 0.5


def test_self_consistency_cut_paths_and_errors():
  g = cands(texts=["=1", "=2", "=2", "=1", "=1"], finish=["length", "stop", "stop", "stop",
                                                          "length"])
  assert indices(SelfConsistency(answer_after_equals), [g]) == [0]
  assert indices(SelfConsistency(answer_after_equals, exclude_cut=True), [g]) == [1]
  by_path = SelfConsistency("test_selection_strategies:answer_after_equals")
  assert indices(by_path, [g]) == [0]
  assert by_path.needs_texts() and by_path.required_metrics() == ()
  assert resolve_callable("builtins:str.strip") is str.strip
  with pytest.raises(ValueError, match="reads texts"):
    SelfConsistency(answer_after_equals).select([cands(m=[1.0])])
  with pytest.raises(RuntimeError, match="answer_fn failed on prompt 'p', candidate 0"):
    SelfConsistency(lambda t: 1 / 0).select([g])
  for bad, match in [("nomodule", "package.module:function"),
                     ("no_such_module_xyz:f", "cannot import"),
                     ("builtins:no_such_fn", "has no attribute"),
                     ("math:pi", "not a callable")]:
    with pytest.raises(ValueError, match=match):
      SelfConsistency(bad)
  with pytest.raises(ValueError, match=r"min_agreement must be a number in \[0, 1\]"):
    SelfConsistency(answer_after_equals, min_agreement=1.5)


# ------------------------------------------------------------------ configs

ROUND_TRIP = [
    BestOfK("length_words"), WorstOfK("toxicity", exclude_cut=True), Random(7), First(),
    First(teacher="big", exclude_cut=True),
    Weighted({"length_words": 1.0, "toxicity": -2.0}, normalize="rank"),
    Pareto({"mtld": "max", "toxicity": "min"}, tie_break="mtld", exclude_cut=True),
    Threshold(Threshold(BestOfK("a"), "a", min=3), "b", max=0.5),
    SelfConsistency("test_selection_strategies:answer_after_equals", min_agreement=0.6),
]


@pytest.mark.parametrize("strategy", ROUND_TRIP, ids=lambda s: type(s).__name__)
def test_config_round_trip(strategy):
  cfg = to_config(strategy)
  assert isinstance(cfg, ml_collections.ConfigDict)
  assert from_config(cfg) == strategy
  assert from_config(cfg.to_dict()) == strategy
  assert to_config(from_config(cfg)) == cfg


def test_from_config_examples():
  c = ml_collections.ConfigDict({"name": "best", "metric": "length_words", "maximize": True})
  assert from_config(c) == BestOfK("length_words")
  assert from_config({"name": "worst", "metric": "tox"}) == WorstOfK("tox")
  c = ml_collections.ConfigDict({"name": "weighted", "weights": {"a": 1.0, "b": -1.0},
                                 "normalize": "zscore"})
  assert from_config(c) == Weighted({"a": 1.0, "b": -1.0})
  c = ml_collections.ConfigDict({"name": "threshold", "metric": "length_words", "min": 50,
                                 "inner": {"name": "best", "metric": "length_words"}})
  assert from_config(c) == Threshold(BestOfK("length_words"), "length_words", min=50.0)
  assert from_config({"name": "random"}) == Random(0)
  s = from_config({"name": "self_consistency", "answer_fn": "builtins:str.strip"})
  assert s == SelfConsistency("builtins:str.strip")
  # A callable answer_fn is recorded by its import path.
  assert to_config(SelfConsistency(answer_after_equals)).answer_fn == (
      "test_selection_strategies:answer_after_equals")
  with pytest.raises(ValueError, match="not importable by path"):
    to_config(SelfConsistency(lambda t: t))


@pytest.mark.parametrize("cfg, match", [
    ({"metric": "m"}, "missing key 'name'"),
    ({"name": "bestest", "metric": "m"},
     "unknown selection strategy 'bestest'; known: best, worst, random, first, weighted, "
     "pareto, threshold, from_teachers, self_consistency"),
    ({"name": "best"}, "'best' is missing key 'metric'"),
    ({"name": "best", "metric": "m", "maximise": True}, "'best' has unknown key 'maximise'"),
    ({"name": "worst", "metric": "m", "maximize": True}, "'worst' has unknown key 'maximize'"),
    ({"name": "best", "metric": "m", "maximize": "false"}, "maximize must be a bool"),
    ({"name": "threshold", "metric": "m", "min": 1}, "'threshold' is missing key 'inner'"),
    ({"name": "threshold", "metric": "m", "min": 1, "inner": {"name": "best"}},
     "'best' is missing key 'metric'"),
    ({"name": "weighted", "weights": {"a": 1}, "normalise": "rank"},
     "'weighted' has unknown key 'normalise'"),
    ({"name": "pareto", "metrics": {"a": "maximum"}}, "'max' or 'min'"),
    ({"name": "self_consistency"}, "'self_consistency' is missing key 'answer_fn'"),
    ({"name": "random", "seed": "0"}, "seed must be an int"),
    ({"name": "best", "metric": ""}, "metric must be a non-empty string"),
])
def test_from_config_errors(cfg, match):
  with pytest.raises(ValueError, match=re.escape(match)):
    from_config(ml_collections.ConfigDict(cfg))


def test_required_metrics_and_lazy_exports():
  assert BestOfK("m").required_metrics() == ("m",)
  assert Random().required_metrics() == () and not Random().needs_texts()
  assert Pareto({"b": "min", "a": "max"}).required_metrics() == ("a", "b")
  assert Threshold(SelfConsistency(answer_after_equals), "m", min=0).needs_texts()
  assert strategies.Weighted is Weighted and strategies.Pareto is Pareto
  with pytest.raises(AttributeError):
    strategies.NoSuchThing  # noqa: B018


def test_every_strategy_on_a_mixed_table_returns_one_choice_per_group():
  rows = _pool_rows() + [{"prompt_id": "p3", "teacher": "big", "sample_index": 0, "m": None,
                          "finish_reason": "length", "text": "=1"}]
  for r in rows[:-1]:
    r["text"] = f"= {int(r['m']) % 2}"
  groups = group_candidates(rows, ["m"], with_texts=True)
  for s in (BestOfK("m"), WorstOfK("m", exclude_cut=True), Random(7), First(),
            Weighted({"m": 1}), Pareto({"m": "min"}), Threshold(BestOfK("m"), "m", min=5),
            SelfConsistency(answer_after_equals, min_agreement=0)):
    choices = s.select(groups)
    assert len(choices) == len(groups)
    for g, c in zip(groups, choices):
      assert (c.index is None) == bool(c.reason)
      assert c.index is None or 0 <= c.index < len(g)
  assert count_reasons(BestOfK("m").select(groups)) == {"all candidates NaN on m": 1}
  assert count_reasons(First().select(groups)) == {}


def test_from_teachers_runs_the_inner_strategy_on_those_teachers_only():
  from ai_jax.selection.filters import FromTeachers
  groups = [cands("p", teachers=("a", "b", "b", "a"), m=[9.0, 5.0, 7.0, 1.0]),
            cands("q", teachers=("a", "a"), m=[2.0, 3.0]),
            cands("r", teachers=("b", "a", "b"), m=[NAN, 4.0, NAN])]
  best = from_config({"name": "best", "metric": "m"})
  only_b = FromTeachers(inner=best, teachers=("b",))
  # Indices point into the full pool: b's best of p is candidate 2 (7.0), not a's 9.0.
  assert only_b.select(groups) == [Choice(2), Choice(None, "no sample from b"),
                                   Choice(None, "all candidates NaN on m")]
  assert best.select(groups) == [Choice(0), Choice(1), Choice(1)]
  both = FromTeachers(inner=best, teachers=("a", "b"))
  assert both.select(groups) == best.select(groups)
  # Its config form round-trips, and a random baseline inside it draws among b's samples.
  cfg = {"name": "from_teachers", "teachers": ["b"], "inner": {"name": "random", "seed": 3}}
  random_b = from_config(cfg)
  assert from_config(to_config(random_b)) == random_b
  assert random_b.select(groups)[0].index in (1, 2)
  with pytest.raises(ValueError, match="needs teachers"):
    FromTeachers(inner=best, teachers=())
