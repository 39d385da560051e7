"""The td_ scorers (TextDescriptives 2.8.4, the textdescriptives extra): every column, its
values equal to the library's own, one parse per text, NaN as Undefined, the install
command without the extra; and the parity of our light scorers with it where they overlap
(docs/textdescriptives.md gives the figures and the causes of every difference)."""

import json
import math
import os
import warnings

import numpy as np
import pytest

from ai_jax import metrics
from ai_jax.metrics import descriptives, registry
from ai_jax.metrics.text_units import text_counts
from metrics_corpus import varied_texts

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _td():
  """The library; the extra is part of the test command, so its absence fails."""
  try:
    import textdescriptives  # noqa: PLC0415
  except ImportError as e:
    raise AssertionError(f"the textdescriptives extra is missing: {descriptives.INSTALL}") from e
  return textdescriptives


def _reference_rows(texts):
  """TextDescriptives' own extraction, on a pipeline built here, not ai_jax's."""
  import spacy  # noqa: PLC0415
  td = _td()
  nlp = spacy.load(descriptives.DEFAULT_MODEL)
  for component in descriptives.COMPONENTS:
    nlp.add_pipe(f"textdescriptives/{component}")
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"\[W007\]")  # coherence without word vectors
    return td.extract_df(list(nlp.pipe(texts)), include_text=False)


@pytest.fixture(scope="module")
def references():
  """The human-written answers of the self-instruct seed tasks (175 texts)."""
  path = os.path.join(REPO, "ai_jax", "data", "builtin", "self_instruct_seed.jsonl")
  return [json.loads(line)["reference"] for line in open(path, encoding="utf-8")]


def test_every_column_is_a_scorer_and_equals_the_library():
  texts = varied_texts(40) + ["", "One sentence only.", "Two here. And two."]
  reference = _reference_rows(texts)
  assert set(reference.columns) == set(descriptives.COLUMNS)  # no column missing or extra
  names = [descriptives.PREFIX + c for c in descriptives.COLUMNS]
  assert set(names) <= set(registry.known_names())
  table = metrics.score(texts, names)
  for column in descriptives.COLUMNS:
    ours, theirs = table.values[descriptives.PREFIX + column], reference[column].to_numpy(float)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg=column)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0, err_msg=column)
    for i in np.flatnonzero(np.isnan(ours)):
      assert table.errors[i][descriptives.PREFIX + column].startswith(registry.UNDEFINED_PREFIX)


def test_undefined_reasons():
  table = metrics.score(["", "One sentence only."],
                        ["td_smog", "td_first_order_coherence", "td_n_tokens"])
  assert table.values["td_n_tokens"].tolist() == [0.0, 3.0]
  assert table.errors[0]["td_smog"] == "undefined: empty text (no tokens)"
  assert "3 sentences" in table.errors[1]["td_smog"]
  assert "2 sentences" in table.errors[1]["td_first_order_coherence"]


def test_one_parse_serves_every_column(monkeypatch):
  texts = [f"Sentence number {i} is here. It has a friend." for i in range(7)]
  metrics.score(texts[:1], ["td_n_tokens"])  # the pipeline exists
  nlp = descriptives._PIPELINES[descriptives.DEFAULT_MODEL]
  calls = []
  original = nlp.pipe

  def counting_pipe(batch, **kwargs):
    batch = list(batch)
    calls.append(len(batch))
    return original(batch, **kwargs)
  monkeypatch.setattr(nlp, "pipe", counting_pipe)
  table = metrics.score(texts + texts[:2], ["td_n_tokens", "td_entropy", "td_pos_prop_NOUN",
                                            "td_dependency_distance_mean"])
  assert calls == [6]  # the 6 texts not cached yet, once, for all four columns
  assert table.values["td_n_tokens"][7] == table.values["td_n_tokens"][0]


def test_without_the_extra_the_error_names_the_install_command(monkeypatch):
  real = descriptives.importlib.util.find_spec
  monkeypatch.setattr(descriptives.importlib.util, "find_spec",
                      lambda name, *a: None if name == "textdescriptives" else real(name, *a))
  assert "td_entropy" in registry.known_names()  # still listed
  with pytest.raises(registry.MetricError) as e:
    registry.get_scorer("td_entropy")
  assert "'textdescriptives' is not installed" in str(e.value)
  assert descriptives.INSTALL in str(e.value)


def test_bad_names_and_options():
  with pytest.raises(registry.MetricError, match="did you mean 'td_dependency_distance_mean'"):
    registry.get_scorer("dependency_distance_mean")
  with pytest.raises(registry.MetricError, match=r"takes options \['spacy_model'\]"):
    registry.get_scorer("td_entropy", n=2)
  with pytest.raises(registry.MetricError, match="no_such_model"):
    registry.get_scorer("td_entropy", spacy_model="no_such_model")


# ---------------------------------------------------------------- parity with our scorers

# our scorer -> its TextDescriptives column; the floor of the Spearman rank correlation on
# the 175 seed answers (measured figures in docs/textdescriptives.md).
OVERLAP = {
    "length_words": ("n_tokens", 0.95),
    "length_sentences": ("n_sentences", 0.85),
    "ttr": ("proportion_unique_tokens", 0.85),
    "mean_sentence_length": ("sentence_length_mean", 0.85),
    "syllables_per_word": ("syllables_per_token_mean", 0.85),
    "flesch_reading_ease": ("flesch_reading_ease", 0.85),
    "flesch_kincaid_grade": ("flesch_kincaid_grade", 0.85),
    "smog(min_sentences=3)": ("smog", 0.85),
    "gunning_fog": ("gunning_fog", 0.75),
    "ari": ("automated_readability_index", 0.85),
    "coleman_liau": ("coleman_liau_index", 0.85),
    "lix": ("lix", 0.85),
    "rix": ("rix", 0.85),
}


@pytest.fixture(scope="module")
def both(references):
  ours = metrics.score(references, list(OVERLAP)).values
  theirs = metrics.score(references, ["td_" + c for c, _ in OVERLAP.values()]
                         + ["td_token_length_mean"]).values
  return ours, theirs


def test_rank_agreement_with_textdescriptives(both):
  from scipy.stats import spearmanr  # noqa: PLC0415
  ours, theirs = both
  for spec, (column, floor) in OVERLAP.items():
    a, b = ours[spec.partition("(")[0]], theirs["td_" + column]
    finite = np.isfinite(a) & np.isfinite(b)
    assert finite.sum() >= 50, spec
    rho = spearmanr(a[finite], b[finite])[0]
    assert rho >= floor, f"{spec} vs {column}: Spearman {rho:.3f} < {floor}"


def test_formulas_equal_where_the_units_agree(references, both):
  """The differences are in the units (words, sentences, syllables), not the formulas:
  wherever the counts agree, the indices agree to rounding."""
  ours, theirs = both
  same_syllables = same_letters = 0
  for i, text in enumerate(references):
    c = text_counts(text)
    words, sentences = theirs["td_n_tokens"][i], theirs["td_n_sentences"][i]
    if not (c.words == words and c.sentences == sentences):
      continue
    if math.isclose(c.syllables, theirs["td_syllables_per_token_mean"][i] * words):
      same_syllables += 1
      for name in ("flesch_reading_ease", "flesch_kincaid_grade"):
        assert math.isclose(ours[name][i], theirs["td_" + name][i], abs_tol=1e-9), (name, text)
    if math.isclose(c.letters, theirs["td_token_length_mean"][i] * words):
      same_letters += 1
      assert math.isclose(ours["ari"][i], theirs["td_automated_readability_index"][i],
                          abs_tol=1e-9), text
      assert math.isclose(ours["coleman_liau"][i], theirs["td_coleman_liau_index"][i],
                          abs_tol=1e-9), text
  assert same_syllables >= 30 and same_letters >= 60  # measured: 40 and 73 of 175


def test_documented_differences_by_hand():
  def pair(text, ours, theirs):
    return (metrics.score([text], [ours]).values[ours][0],
            metrics.score([text], ["td_" + theirs]).values["td_" + theirs][0])
  # Syllables: CMUdict first (ev-e-ry, a-re-a, po-em, beau-ti-ful: 14) vs pyphen
  # hyphenation points (9), so TextDescriptives reads this as far easier.
  text = "Every area of the poem is beautiful."
  assert text_counts(text).syllables == 14
  ours, theirs = pair(text, "syllables_per_word", "syllables_per_token_mean")
  assert (ours, theirs) == (2.0, 9 / 7)
  fre_ours, fre_td = pair(text, "flesch_reading_ease", "flesch_reading_ease")
  assert fre_ours == pytest.approx(30.53) and fre_td == pytest.approx(90.9586, abs=1e-4)
  # Words: textstat counts a hyphenated compound once, spaCy splits it at each hyphen.
  assert pair("It is a state-of-the-art model.", "length_words", "n_tokens") == (5.0, 8.0)
  # Sentences: textstat does not count a run of 2 words or fewer; spaCy's parser does.
  assert pair("Hi. The dog ran home fast.", "length_sentences", "n_sentences") == (1.0, 2.0)
  # Same units, same value.
  assert pair("The cat sat on the mat.", "flesch_reading_ease", "flesch_reading_ease") == (
      pytest.approx(116.145), pytest.approx(116.145))
