"""The metric registry, per-row fault isolation, length/marker scorers, toxicity_offline."""

import math
import sys
import textwrap

import numpy as np
import pytest

from ai_jax import metrics
from ai_jax.metrics import registry, runner, toxicity
from metrics_corpus import varied_texts


def test_unknown_metric_lists_known_names():
  with pytest.raises(registry.MetricError) as e:
    registry.get_scorer("mtdl")
  msg = str(e.value)
  assert "'mtdl'" in msg
  for name in ("mtld", "length_words", "toxicity_offline", "flesch_reading_ease"):
    assert name in msg


def test_every_builtin_declares_direction_version_and_description():
  for name in registry.known_names():
    if name in ("hf_classifier", "toxicity_hf"):
      continue  # need a checkpoint path; covered in test_metrics_hf_classifier.py
    scorer = registry.get_scorer(name)
    info = scorer.info()
    assert info["higher_means"] and info["version"] and info["description"], name


def test_unknown_option_is_a_clear_error():
  with pytest.raises(registry.MetricError, match="takes options"):
    registry.get_scorer("length_words", n=3)


@pytest.mark.parametrize("spec,expected", [
    ("mtld", ("mtld", "mtld", {})),
    ("div=mtld(threshold=0.5)", ("div", "mtld", {"threshold": 0.5})),
    ("tox=hf_classifier(path=/models/tb, label=toxic)",
     ("tox", "hf_classifier", {"path": "/models/tb", "label": "toxic"})),
    ("my_pkg.metrics:politeness", ("politeness", "my_pkg.metrics:politeness", {})),
])
def test_parse_spec(spec, expected):
  assert registry.parse_spec(spec) == expected


def test_bad_specs():
  with pytest.raises(registry.MetricError, match="not key=value"):
    registry.parse_spec("mtld(0.5)")
  with pytest.raises(registry.MetricError, match="appears twice"):
    registry.scorers_from_specs(["length_words", "length_words"])


@pytest.fixture
def user_module(tmp_path, monkeypatch):
  (tmp_path / "my_user_metrics.py").write_text(textwrap.dedent('''
      from ai_jax.metrics import registry

      def exclamations(text):
          """Number of '!' characters."""
          return text.count("!")
      exclamations.higher_means = "more excited"

      def echoes_prompt(text, prompt):
          return float(prompt.lower() in text.lower())

      def flaky(text):
          if "boom" in text:
              raise RuntimeError("cannot score boom")
          if "nan" in text:
              return float("nan")
          if "none" in text:
              return None
          return len(text)

      def batch_factory(scale=1.0):
          return registry.Scorer(
              name="scaled", score_batch=lambda texts, ctx: [scale * len(t) for t in texts],
              higher_means="longer", version="7")
      batch_factory.is_scorer_factory = True

      NOT_CALLABLE = 3
  '''))
  monkeypatch.syspath_prepend(str(tmp_path))
  yield "my_user_metrics"
  sys.modules.pop("my_user_metrics", None)


def test_user_scorer_by_import_path(user_module):
  table = metrics.score(["Hi! Yo!", "calm"], [f"{user_module}:exclamations"])
  np.testing.assert_array_equal(table.values["exclamations"], [2.0, 0.0])
  info = registry.get_scorer(f"{user_module}:exclamations").info()
  assert info["higher_means"] == "more excited"
  assert info["version"].startswith("src-")  # changes when the function's source changes
  assert info["description"] == "Number of '!' characters."


def test_user_scorer_with_prompt_and_factory_options(user_module):
  table = metrics.score(["Paris is nice", "no"], [f"{user_module}:echoes_prompt"],
                        prompts=["paris", "paris"])
  np.testing.assert_array_equal(table.values["echoes_prompt"], [1.0, 0.0])
  with pytest.raises(registry.MetricError, match="needs the prompts"):
    metrics.score(["x"], [f"{user_module}:echoes_prompt"])
  table = metrics.score(["abc"], [f"s={user_module}:batch_factory(scale=2)"])
  assert table.values["s"][0] == 6.0


def test_user_scorer_errors(user_module):
  with pytest.raises(registry.MetricError, match="cannot import"):
    registry.get_scorer("no_such_module_xyz:fn")
  with pytest.raises(registry.MetricError, match="has no attribute"):
    registry.get_scorer(f"{user_module}:missing")
  with pytest.raises(registry.MetricError, match="not a callable"):
    registry.get_scorer(f"{user_module}:NOT_CALLABLE")


def test_faults_stay_per_row(user_module):
  texts = ["fine", "boom here", "nan here", "none here", "also fine"]
  table = metrics.score(texts, [f"{user_module}:flaky", "length_chars"])
  flaky = table.values["flaky"]
  assert flaky[0] == 4 and flaky[4] == 9
  assert np.isnan(flaky[1:4]).all()
  assert table.errors[1]["flaky"] == "RuntimeError: cannot score boom"
  assert table.errors[2]["flaky"] == "scorer returned NaN"
  assert "NoneType" in table.errors[3]["flaky"]
  assert not table.errors[0] and not table.errors[4]
  np.testing.assert_array_equal(table.values["length_chars"], [len(t) for t in texts])
  assert table.counts()["flaky"] == {"rows": 5, "failed": 3, "undefined": 0}


def test_batch_scorer_that_raises_is_isolated_row_by_row():
  calls = []

  def score_batch(texts, context):
    calls.append(len(texts))
    if any("bad" in t for t in texts):
      raise ValueError("bad row in batch")
    return [1.0] * len(texts)
  scorer = registry.Scorer("b", score_batch, higher_means="x", version="1", batch_size=8)
  table = runner.score_texts({"b": scorer}, ["ok", "bad", "ok", "ok"])
  np.testing.assert_array_equal(np.isnan(table.values["b"]), [False, True, False, False])
  assert table.errors[1]["b"] == "ValueError: bad row in batch"
  assert calls[0] == 4 and len(calls) == 5  # one batch, then one call per row


def test_wrong_length_and_metric_errors_stop_the_run():
  short = registry.Scorer("s", lambda texts, c: [1.0], higher_means="x", version="1")
  with pytest.raises(registry.MetricError, match="returned 1 values for 2 texts"):
    runner.score_texts({"s": short}, ["a", "b"])

  def needs_key(texts, context):
    raise registry.MetricError("set PERSPECTIVE_API_KEY")
  scorer = registry.Scorer("k", needs_key, higher_means="x", version="1")
  with pytest.raises(registry.MetricError, match="PERSPECTIVE_API_KEY"):
    runner.score_texts({"k": scorer}, ["a"])


def test_skip_rows_get_reason_in_every_column():
  scorers = registry.scorers_from_specs(["length_chars", "num_questions"])
  table = runner.score_texts(scorers, ["a?", "", "b"], skip={1: "not sampled: prompt_too_long"})
  assert np.isnan(table.values["length_chars"][1])
  assert table.errors[1] == {"length_chars": "not sampled: prompt_too_long",
                             "num_questions": "not sampled: prompt_too_long"}
  assert table.values["num_questions"][0] == 1


EDGE_TEXTS = ["", "   \n\t ", "这是一个中文句子。没有英文单词。", "Это русский текст. Он короткий.",
              ("All work and no play makes Jack a dull boy. " * 2400)[:100_000]]


def test_all_offline_builtins_handle_edge_texts():
  from configs import score as score_config
  table = metrics.score(EDGE_TEXTS, list(score_config.OFFLINE_METRICS),
                        tokenizer=_WordTokenizer())
  counts = table.counts()
  for column, c in counts.items():
    assert c["failed"] == 0, (column, [e.get(column) for e in table.errors])
  for i, row_errors in enumerate(table.errors):
    for column, reason in row_errors.items():
      assert runner.is_undefined(reason), (i, column, reason)
      assert i in (0, 1) or column not in ("length_words", "length_chars"), (i, column)
  assert table.values["length_chars"][4] == 100_000
  assert table.values["length_words"][0] == 0.0  # empty text has 0 words, not undefined


class _WordTokenizer:
  def encode(self, text, add_bos=False):
    return text.split()


def test_length_scorers_hand_values():
  text = "The cat sat. It's a well-known cat, isn't it? Yes."
  table = metrics.score([text], ["length_chars", "length_words", "length_sentences",
                                 "length_tokens"], tokenizer=_WordTokenizer())
  assert table.values["length_chars"][0] == len(text)
  # The, cat, sat, It's, a, well-known, cat, isn't, it, Yes -> 10 words.
  assert table.values["length_words"][0] == 10
  # "Yes." has 1 word (<= 2 words are not counted as a sentence, as textstat does).
  assert table.values["length_sentences"][0] == 2
  assert table.values["length_tokens"][0] == len(text.split())


def test_length_tokens_without_tokenizer_is_a_clear_error():
  with pytest.raises(registry.MetricError, match="needs a tokenizer"):
    metrics.score(["abc"], ["length_tokens"])


def test_markers_hand_values():
  text = ("Here is a list:\n- one\n* two?\n1. three\n2) four\n\nWhy? Is it good?\n"
          "```python\n# - not an item\nprint('why?')\n```\n~~~\nunclosed - x")
  table = metrics.score([text], ["num_list_items", "num_code_blocks", "num_questions",
                                 "num_paragraphs"])
  assert table.values["num_list_items"][0] == 4
  assert table.values["num_code_blocks"][0] == 2  # the unclosed ~~~ fence counts
  assert table.values["num_questions"][0] == 3  # two?, Why?, Is it good?
  assert table.values["num_paragraphs"][0] == 2
  assert metrics.score(["1.5 is a number.\n-3 too"], ["num_list_items"]).values[
      "num_list_items"][0] == 0


def test_toxicity_offline_equals_alt_profanity_check():
  profanity_check = pytest.importorskip("profanity_check")
  texts = varied_texts(200) + EDGE_TEXTS + [
      "you are a stupid idiot", "what the hell is this shit", "I love my kind neighbours",
      "F*ck off, loser!!!", "SHUT UP YOU MORON"]
  ours = toxicity.profanity_probability(texts)
  ref = profanity_check.predict_prob(texts)
  np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)
  assert ours[-5] > 0.9 and ours[-3] < 0.2  # the model does separate these
  scorer = registry.get_scorer("toxicity_offline")
  assert scorer.info()["version"] == "alt-profanity-check-1.9.1"


def test_toxicity_offline_hand_value():
  # With no known word, the TF-IDF row is zero, so each SVM gives its intercept b_c and
  # P = mean_c 1 / (1 + exp(A_c * b_c + B_c)).
  m = toxicity._model()
  expected = np.mean(1 / (1 + np.exp(m["calib_slope_C"] * m["intercept_C"]
                                     + m["calib_offset_C"])))
  assert math.isclose(toxicity.profanity_probability(["zzzqqq"])[0], expected, rel_tol=1e-12)
