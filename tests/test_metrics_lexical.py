"""ai_jax.metrics.lexical: hand-worked values, equality with lexicalrichness 0.5.1 (the
reference for tokenisation, TTR, MTLD, MATTR and HD-D), options and hostile texts."""

from __future__ import annotations

import math
import random
import string
import time

import pytest
from metrics_corpus import varied_texts

from ai_jax import metrics
from ai_jax.metrics import lexical, registry

REGISTERED = ("ttr", "mtld", "mattr", "hdd", "distinct_n", "distinct_1", "distinct_2",
              "distinct_3", "unique_ngram_fraction", "rep_diversity")


def score(name: str, text: str, **options) -> float:
  """One text through the registered scorer, raising what the row recorded."""
  result = registry.get_scorer(name, **options).score_batch([text], registry.ScoreContext())
  if result.errors:
    raise AssertionError(result.errors[0])
  return result.values[0]


def row_error(name: str, text: str, **options) -> str:
  result = registry.get_scorer(name, **options).score_batch([text], registry.ScoreContext())
  assert math.isnan(result.values[0])
  return result.errors[0]


# --- tokenisation ------------------------------------------------------------------------


def test_tokens_by_hand():
  text = "It's a State-of-the-art GPT-4 model (e.g. 3.14, 1,000) — naïve… “café” C++ x_y"
  # Lowercased; digits and -/–/— deleted (joining words); ASCII punctuation splits
  # ("it's" -> "it", "s"; "x_y" -> "x", "y"); non-ASCII punctuation stays in the word.
  assert lexical.lexical_tokens(text) == [
      "it", "s", "a", "stateoftheart", "gpt", "model", "e", "g", "naïve…", "“café”", "c",
      "x", "y"]
  assert lexical.lexical_tokens("well–known and well—known") == ["wellknown", "and",
                                                                 "wellknown"]
  assert lexical.lexical_tokens("") == lexical.lexical_tokens(" \n\t ") == []


def _fuzz_strings():
  rng = random.Random(7)
  unicode_pool = ([chr(c) for c in range(0x20, 0x3000) if chr(c).isprintable()]
                  + list(" \n\t\u00a0\u2003\u3000\x1c") * 40)
  ascii_pool = list(string.printable) + list("  ab1-") * 5
  out = []
  for pool in (unicode_pool, ascii_pool):
    out += ["".join(rng.choice(pool) for _ in range(rng.randint(0, 80))) for _ in range(600)]
  return out


def test_tokens_equal_lexicalrichness_wordlist():
  lr = pytest.importorskip("lexicalrichness")
  extra = ["ΑΣ ΣΑΣ İstanbul STRASSE Straße", "٣ apples ١٢", "数字123和-汉字", "x\u2028y\x85z"]
  for text in varied_texts(150) + _fuzz_strings() + extra:
    assert lexical.lexical_tokens(text) == lr.LexicalRichness(text).wordlist, repr(text)


# --- hand-computed values --------------------------------------------------------------


def test_ttr_by_hand():
  # the cat sat on the mat: 6 words, 5 types
  assert lexical.ttr("The cat sat on the mat.") == pytest.approx(5 / 6, abs=1e-15)
  assert score("ttr", "A a a a.") == 0.25


def test_mtld_by_hand():
  # Words: the cat the cat the dog the (7), threshold 0.72.
  # Forward: the 1/1, cat 2/2, the 2/3 = .667 <= .72 -> factor 1, restart;
  #   cat 1/1, the 2/2, dog 3/3, the 3/4 = .75 -> text ends: partial (1 - .75)/(1 - .72)
  #   = 25/28, so 1 + 25/28 = 53/28 factors and 7 / (53/28) = 196/53.
  # Backward: the dog the (2/3 -> factor 1), cat the cat (2/3 -> factor 2), the 1/1: the
  #   partial is (1 - 1)/.28 = 0, so 7 / 2 = 7/2.
  # MTLD = (196/53 + 7/2) / 2 = 763/212.
  assert lexical.mtld("The cat the cat the dog the") == pytest.approx(763 / 212, abs=1e-12)
  # No word repeats: every run keeps TTR 1, and lexicalrichness then gives the word count.
  assert lexical.mtld("one two three four five") == 5.0
  # A run closes when its TTR equals the threshold (`<=`): with threshold 2/3 both passes
  # over a b a b a b a cut a b a | b a b | a, 2 factors and a last run of TTR 1 (partial 0).
  assert lexical.mtld("a b a b a b a", threshold=2 / 3) == 3.5


def test_mattr_by_hand():
  # windows of 2 over a b a c: ab, ba, ac -> all TTR 1; of 3: aba (2/3), bac (1) -> 5/6.
  assert lexical.mattr("a b a c", window_size=2) == 1.0
  assert lexical.mattr("a b a c", window_size=3) == pytest.approx(5 / 6, abs=1e-15)
  # window = text length: one window, MATTR = TTR.
  assert lexical.mattr("a b a c", window_size=4) == 0.75


def test_hdd_by_hand():
  # a a b, 2 draws of 3 words: P(no a) = C(1,2)/C(3,2) = 0, P(no b) = C(2,2)/C(3,2) = 1/3;
  # HD-D = (1 - 0)/2 + (1 - 1/3)/2 = 5/6.
  assert lexical.hdd("a a b", draws=2) == pytest.approx(5 / 6, abs=1e-15)
  # draws = all words: every type surely appears, so HD-D = TTR.
  assert lexical.hdd("a a b c", draws=4) == 0.75


def test_ngram_metrics_by_hand():
  # the cat sat on the mat: bigrams the-cat cat-sat sat-on on-the the-mat, all distinct.
  assert lexical.distinct_n("The cat sat on the mat.") == pytest.approx(5 / 6, abs=1e-15)
  assert lexical.distinct_n("The cat sat on the mat.", n=1) == pytest.approx(5 / 6, abs=1e-15)
  assert lexical.unique_ngram_fraction("The cat sat on the mat.") == 1.0
  # a b a b a b: bigrams ab ba ab ba ab (2 of 5 distinct), trigrams aba bab aba bab
  # (2 of 4), 4-grams abab baba abab (2 of 3): rep_diversity = 2/5 * 2/4 * 2/3 = 2/15.
  text = "a b a b a b"
  assert lexical.distinct_n(text, n=2) == pytest.approx(2 / 6, abs=1e-15)
  assert lexical.unique_ngram_fraction(text, n=3) == 0.5
  assert lexical.rep_diversity(text) == pytest.approx(2 / 15, abs=1e-15)
  assert lexical.rep_diversity("one two three four") == 1.0


def test_corpus_functions():
  texts = ["a b a b a b", "a b c", "", "x"]
  # Pooled bigrams: ab ba ab ba ab | ab bc -> {ab, ba, bc} = 3 distinct; 6 + 3 + 0 + 1 words.
  assert lexical.corpus_distinct_n(texts, 2) == pytest.approx(3 / 10, abs=1e-15)
  # Bigrams 3 of 7, trigrams {aba, bab, abc} 3 of 5, 4-grams {abab, baba} 2 of 3.
  assert lexical.corpus_rep_diversity(texts) == pytest.approx(3 / 7 * 3 / 5 * 2 / 3,
                                                              abs=1e-15)
  # A text repeated across the corpus counts as repetition, unlike one text alone.
  assert lexical.corpus_rep_diversity(["a b c d"]) == 1.0
  assert lexical.corpus_rep_diversity(["a b c d", "a b c d"]) == pytest.approx(1 / 8)
  with pytest.raises(registry.Undefined):
    lexical.corpus_rep_diversity(["a b c", ""])
  with pytest.raises(registry.Undefined):
    lexical.corpus_distinct_n([], 1)
  with pytest.raises(registry.MetricError):
    lexical.corpus_distinct_n("a b c", 2)


def test_corpus_functions_equal_brute_force():
  texts = varied_texts(200) + ["", "a", "a b"]
  words = [lexical.lexical_tokens(t) for t in texts]

  def pooled(n):
    grams = [g for w in words for g in zip(*(w[i:] for i in range(n)))]
    return len(set(grams)), len(grams)
  total = sum(map(len, words))
  for n in (1, 2, 3, 5):
    assert lexical.corpus_distinct_n(texts, n) == pooled(n)[0] / total
  expected = math.prod(u / t for u, t in map(pooled, (2, 3, 4)))
  assert lexical.corpus_rep_diversity(texts) == pytest.approx(expected, rel=1e-15)


# --- lexicalrichness equality ------------------------------------------------------------


def _reference(fn):
  try:
    return fn()
  except (ValueError, ZeroDivisionError):  # what lexicalrichness raises where undefined
    return None


def _ours(fn):
  try:
    return fn()
  except registry.Undefined:
    return None


# The last number is how many of the 300 texts must be defined, so the check is not vacuous
# (MATTR's window of 100 words and HD-D's 42 draws need the corpus's longer texts).
@pytest.mark.parametrize("name,options,call,min_defined", [
    ("ttr", {}, lambda lr: lr.ttr, 295),
    ("mtld", {}, lambda lr: lr.mtld(threshold=0.72), 295),
    ("mtld", {"threshold": 0.6}, lambda lr: lr.mtld(threshold=0.6), 295),
    ("mattr", {}, lambda lr: lr.mattr(window_size=100), 50),
    ("mattr", {"window_size": 10}, lambda lr: lr.mattr(window_size=10), 250),
    ("hdd", {}, lambda lr: lr.hdd(draws=42), 150),
    ("hdd", {"draws": 7}, lambda lr: lr.hdd(draws=7), 280),
])
def test_equal_to_lexicalrichness(name, options, call, min_defined):
  lr = pytest.importorskip("lexicalrichness")
  scorer = registry.get_scorer(name, **options)
  texts = varied_texts(300)
  result = scorer.score_batch(texts, registry.ScoreContext())
  defined = 0
  for i, text in enumerate(texts):
    expected = _reference(lambda: call(lr.LexicalRichness(text)))
    if expected is None:
      assert result.errors[i].startswith(registry.UNDEFINED_PREFIX), (text, result.errors[i])
      continue
    assert i not in result.errors, (text, result.errors.get(i))
    assert result.values[i] == pytest.approx(expected, abs=1e-9, rel=0), text
    defined += 1
  assert defined >= min_defined


def test_mtld_threshold_edges_equal_lexicalrichness():
  lr = pytest.importorskip("lexicalrichness")
  rng = random.Random(3)
  texts = [" ".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 60)))
           for _ in range(300)]
  for threshold in (0.72, 0.5, 2 / 3, 0.75, 0.9):
    for text in texts:
      assert lexical.mtld(text, threshold=threshold) == pytest.approx(
          lr.LexicalRichness(text).mtld(threshold=threshold), abs=1e-9, rel=0), text


# --- options, registration ---------------------------------------------------------------


def test_registered_scorers_describe_themselves():
  for name in REGISTERED:
    scorer = registry.get_scorer(name)
    assert scorer.name == name and scorer.version == "1"
    assert "diverse" in scorer.higher_means
    assert len(scorer.description) > 40, name


def test_options_and_aliases():
  text = varied_texts(150)[20]
  assert registry.get_scorer("mtld").options == {"threshold": 0.72}
  assert score("mtld", text, threshold=0.5) == lexical.mtld(text, threshold=0.5)
  assert score("mtld", text, threshold=0.5) != score("mtld", text)
  by_option = registry.get_scorer("distinct_n", n=3)
  alias = registry.get_scorer("distinct_3")
  assert by_option.options == alias.options == {"n": 3}
  assert alias.name == "distinct_3"
  assert score("distinct_n", text, n=3) == score("distinct_3", text) \
      == lexical.distinct_n(text, n=3)
  assert score("distinct_1", text) == lexical.distinct_n(text, n=1)
  assert score("distinct_2", text) == score("distinct_n", text)
  assert score("unique_ngram_fraction", text, n=4) == lexical.unique_ngram_fraction(text, 4)
  assert score("mattr", text, window_size=5) == lexical.mattr(text, window_size=5)
  assert score("hdd", text, draws=5) == lexical.hdd(text, draws=5)


def test_unknown_and_bad_options():
  with pytest.raises(registry.MetricError, match="takes options"):
    registry.get_scorer("mtld", treshold=0.7)
  with pytest.raises(registry.MetricError):
    registry.get_scorer("distinct_3", m=2)
  with pytest.raises(registry.MetricError):
    registry.get_scorer("rep_diversity", n=2)
  # A bad option value stops the run with one message rather than failing every row.
  for name, options in [("mtld", {"threshold": 1.5}), ("mtld", {"threshold": 0}),
                        ("distinct_n", {"n": 0}), ("mattr", {"window_size": 2.5}),
                        ("hdd", {"draws": -1}), ("unique_ngram_fraction", {"n": True})]:
    with pytest.raises(registry.MetricError):
      metrics.score(["some words here", "more words"], [f"x={name}"] if not options else
                    [f"x={name}({', '.join(f'{k}={v!r}' for k, v in options.items())})"])
  with pytest.raises(registry.MetricError):
    lexical.mtld("a b", threshold=1.0)


# --- hostile texts -----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   \n\t ", "!!! ... ?? -- (—)", "1, 2, 3 -- 42%"])
def test_no_words_is_undefined(text):
  for name in REGISTERED:
    error = row_error(name, text)
    assert error.startswith(registry.UNDEFINED_PREFIX) and "no words" in error, (name, error)


def test_too_short_is_undefined():
  assert "window" in row_error("mattr", "a few words only")
  assert "draws" in row_error("hdd", "a few words only")
  assert "3-gram" in row_error("distinct_3", "two words")
  assert "2-gram" in row_error("unique_ngram_fraction", "one")
  assert "4-gram" in row_error("rep_diversity", "only three words")
  assert score("distinct_1", "one") == 1.0
  assert score("mtld", "one") == 1.0  # one distinct word: the word count


def test_non_english_texts():
  texts = [
      "Съешь же ещё этих мягких французских булок, да выпей чаю. Съешь же ещё!",
      "机器学习是人工智能的一个分支。 机器学习 很 有趣 , 机器学习 很 有用 。",
      "الذكاء الاصطناعي مجال واسع، والذكاء الاصطناعي يتطور بسرعة.",
      "Ὦ ξεῖν᾽, ἀγγέλλειν Λακεδαιμονίοις ὅτι τῇδε κείμεθα ΣΟΦΟΣ σοφος",
      "🙂 🙂 🚀 naïve café 🙂 résumé ﬁne ǅ",
  ]
  for text in texts:
    for name in ("ttr", "mtld", "distinct_1", "distinct_2"):
      value = score(name, text)
      assert math.isfinite(value) and value > 0, (name, text)
    value = score("hdd", text, draws=5)
    assert 0 < value <= 1


def test_long_text_is_fast():
  rng = random.Random(0)
  vocab = ("the a of model data language learning because however extraordinary tree "
           "house water don't it's e.g. GPT-4 naïve café 1,000").split()
  text = " ".join(rng.choice(vocab) for _ in range(25_000))[:100_000]
  assert len(text) == 100_000
  start = time.perf_counter()
  for name in REGISTERED:
    value = score(name, text)
    assert math.isfinite(value) and value > 0, name
  assert time.perf_counter() - start < 5  # ~0.1 s here; guards against O(n^2)
  lr = pytest.importorskip("lexicalrichness")
  ref = lr.LexicalRichness(text)
  assert score("mtld", text) == pytest.approx(ref.mtld(), abs=1e-9, rel=0)
  assert score("hdd", text) == pytest.approx(ref.hdd(), abs=1e-9, rel=0)
  assert score("mattr", text) == pytest.approx(ref.mattr(), abs=1e-9, rel=0)
