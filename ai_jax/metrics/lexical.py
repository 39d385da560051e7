"""Lexical-diversity metrics: TTR, MTLD, MATTR, HD-D (as the `lexicalrichness` package
0.5.1 computes them, tokenisation included) and the n-gram measures distinct-n, unique
n-gram fraction and STEER's rep-diversity.

lexicalrichness cannot be a dependency (it pulls textblob/nltk, pandas, matplotlib), so the
definitions are rewritten here with the stdlib (numpy for corpus pooling), and
tests/test_metrics_lexical.py checks them against it to 1e-9. Every metric reads the words
of `lexical_tokens`, so all of them (the n-gram ones too) agree on what a word is.
"""

from __future__ import annotations

import itertools
import math
import re
import string
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

from ai_jax.metrics import registry

_HIGHER = "more lexically diverse"

# lexicalrichness's `preprocess` lowercases, deletes ASCII digits ([0-9]+, so "3.14" -> "."),
# deletes "-", "–" and "—" (so "state-of-the-art" -> "stateoftheart", "GPT-4" -> "gpt"),
# then `tokenize` turns every string.punctuation character into a space and splits on
# whitespace. Only ASCII punctuation goes, so "naïve", "…", "“" or "•" stay inside words.
# After lowercasing each step maps one character on its own, so one str.translate does it
# all; but CPython's translate is only fast on ASCII text (on other text two regex passes
# are twice as quick), hence the second route to the same result.
_ASCII_TABLE = str.maketrans(string.punctuation, " " * len(string.punctuation), "0123456789-")
_DELETED = re.compile("[0-9\\-–—]+")
_SEPARATORS = re.compile("[" + re.escape(string.punctuation) + "]")


def lexical_tokens(text: str) -> list[str]:
  """The words of `text` exactly as lexicalrichness 0.5.1's default tokenizer gives them
  (`LexicalRichness(text).wordlist`): lowercased, ASCII digits and hyphens/dashes deleted,
  ASCII punctuation made a separator, split on whitespace."""
  lowered = text.lower()
  if lowered.isascii():
    return lowered.translate(_ASCII_TABLE).split()
  return _SEPARATORS.sub(" ", _DELETED.sub("", lowered)).split()


def _words(text: str) -> list[str]:
  tokens = lexical_tokens(text)
  if not tokens:
    raise registry.Undefined("no words (text is empty or only digits/punctuation/whitespace)")
  return tokens


def _positive_int(name: str, value, metric: str) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise registry.MetricError(f"metric {metric!r}: option {name} must be a positive integer, "
                               f"got {value!r}")
  return value


@registry.text_metric("ttr", higher_means=_HIGHER, version="1")
def ttr(text: str) -> float:
  """Type-token ratio: distinct words / words (Templin 1957), as lexicalrichness's `ttr`.

  Strongly length-dependent (falls as a text grows); prefer MTLD, MATTR or HD-D when
  texts differ in length."""
  tokens = _words(text)
  return len(set(tokens)) / len(tokens)


def _mtld_pass(tokens: Iterable[str], n_tokens: int, threshold: float) -> float:
  # Mirrors lexicalrichness's sub_mtld step by step, float division and `<=` included,
  # so a segment whose TTR equals the threshold (e.g. 18/25 == 0.72) closes a factor there too.
  terms: set[str] = set()
  count = 0
  factors = 0.0
  seg_ttr = 1.0
  for word in tokens:
    count += 1
    terms.add(word)
    seg_ttr = len(terms) / count
    if seg_ttr <= threshold:
      count = 0
      terms = set()
      factors += 1
  if count > 0:
    # The unfinished last segment counts as the fraction of a factor its TTR has fallen
    # from 1 towards the threshold (McCarthy & Jarvis 2010's partial factor).
    factors += (1 - seg_ttr) / (1 - threshold)
  if factors == 0:
    # Only when no word repeats at all (one run, TTR 1, partial 0): lexicalrichness then
    # takes the whole text's TTR, 1, as one factor, so MTLD is the number of words.
    factors = 1
  return n_tokens / factors


@registry.text_metric("mtld", higher_means=_HIGHER, version="1", threshold=0.72)
def mtld(text: str, threshold: float = 0.72) -> float:
  """MTLD, the measure of textual lexical diversity (McCarthy & Jarvis 2010): the mean length
  of the word runs that keep their TTR above `threshold`, averaged over a forward and a
  backward pass, with a partial factor for the last run; as lexicalrichness's `mtld`.

  lexicalrichness's quirks are kept: a text with no repeated word in any run (e.g. all words
  distinct) scores its own word count, and a short text whose only run ends just below
  TTR 1 gets a tiny partial factor and so a large score."""
  if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
      or not 0 < threshold < 1:
    raise registry.MetricError(f"metric 'mtld': threshold must be in (0, 1), got {threshold!r}")
  tokens = _words(text)
  forward = _mtld_pass(tokens, len(tokens), threshold)
  backward = _mtld_pass(reversed(tokens), len(tokens), threshold)
  # fsum then halve is the correctly rounded mean, as statistics.mean gives lexicalrichness.
  return math.fsum((forward, backward)) / 2


@registry.text_metric("mattr", higher_means=_HIGHER, version="1", window_size=100)
def mattr(text: str, window_size: int = 100) -> float:
  """MATTR, the moving-average type-token ratio (Covington & McFall 2010): the mean TTR of
  every window of `window_size` consecutive words; as lexicalrichness's `mattr`.

  Undefined when the text has fewer words than the window (lexicalrichness raises there);
  a text of exactly `window_size` words scores its TTR."""
  window_size = _positive_int("window_size", window_size, "mattr")
  tokens = _words(text)
  n = len(tokens)
  if n < window_size:
    raise registry.Undefined(f"{n} words, fewer than the MATTR window of {window_size}")
  # One pass with a sliding count of each word: O(n), not O(n * window).
  counts = Counter(tokens[:window_size])
  distinct = len(counts)
  total = distinct
  for new, old in zip(tokens[window_size:], tokens):
    if new != old:
      counts[new] += 1
      distinct += counts[new] == 1
      counts[old] -= 1
      distinct -= counts[old] == 0
    total += distinct
  # Summing integer counts and dividing once is the exact mean of the window TTRs.
  return total / (window_size * (n - window_size + 1))


@registry.text_metric("hdd", higher_means=_HIGHER, version="1", draws=42)
def hdd(text: str, draws: int = 42) -> float:
  """HD-D, hypergeometric distribution diversity (McCarthy & Jarvis 2007): the sum over word
  types of P(the type appears in a random draw of `draws` words) / draws, i.e. the expected
  TTR of such a sample; as lexicalrichness's `hdd`.

  Undefined when the text has fewer words than `draws` (lexicalrichness raises there). The
  probability of no occurrence, C(N-K, draws) / C(N, draws), is computed in exact integer
  arithmetic once per distinct word frequency K, which matches scipy's hypergeom.pmf to
  rounding and is cheaper than one scipy call per type."""
  draws = _positive_int("draws", draws, "hdd")
  tokens = _words(text)
  n = len(tokens)
  if n < draws:
    raise registry.Undefined(f"{n} words, fewer than the {draws} HD-D draws")
  # Types sharing a frequency share a probability; a text has few distinct frequencies.
  types_per_freq = Counter(Counter(tokens).values())
  all_draws = math.comb(n, draws)
  return math.fsum(types * (1 - math.comb(n - freq, draws) / all_draws)
                   for freq, types in types_per_freq.items()) / draws


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
  return list(zip(*(tokens[i:] for i in range(n))))


def _text_ngrams(text: str, n: int, metric: str) -> tuple[list[str], list[tuple[str, ...]]]:
  n = _positive_int("n", n, metric)
  tokens = _words(text)
  if len(tokens) < n:
    raise registry.Undefined(f"{len(tokens)} words, too few for a {n}-gram")
  return tokens, _ngrams(tokens, n)


@registry.text_metric("distinct_n", higher_means=_HIGHER, version="1", n=2)
def distinct_n(text: str, n: int = 2) -> float:
  """Distinct-n (Li et al. 2016, "A Diversity-Promoting Objective Function for Neural
  Conversation Models"): the number of distinct word n-grams divided by the number of words.

  Words are `lexical_tokens` (lexicalrichness's tokenisation); n-grams do not cross text
  boundaries. Undefined for a text with fewer than n words. Note the denominator is the word
  count, not the n-gram count, so distinct-n < 1 even without repeats when n > 1; see
  unique_ngram_fraction for the other normalisation."""
  tokens, grams = _text_ngrams(text, n, "distinct_n")
  return len(set(grams)) / len(tokens)


registry.alias("distinct_1", "distinct_n", n=1)
registry.alias("distinct_2", "distinct_n", n=2)
registry.alias("distinct_3", "distinct_n", n=3)


@registry.text_metric("unique_ngram_fraction", higher_means=_HIGHER, version="1", n=2)
def unique_ngram_fraction(text: str, n: int = 2) -> float:
  """Unique n-gram fraction: distinct word n-grams / all word n-grams, i.e. 1 - rep-n of
  Welleck et al. 2020 and Su et al. 2022.

  Words are `lexical_tokens`; a text of L >= n words has L - n + 1 n-grams (all of them:
  SimCTG's reference script stops one short). Undefined for fewer than n words."""
  _, grams = _text_ngrams(text, n, "unique_ngram_fraction")
  return len(set(grams)) / len(grams)


@registry.text_metric("rep_diversity", higher_means="less repetitive (more diverse)",
                      version="1")
def rep_diversity(text: str) -> float:
  """Rep-diversity, prod over n = 2..4 of (1 - rep_n) with rep_n = 1 - distinct n-grams /
  n-grams: the diversity of Su et al. 2022 (SimCTG) as used in STEER (O'Neill et al. 2023).

  Words are `lexical_tokens`, not SimCTG's whitespace split, and every n-gram counts (SimCTG's
  script drops each text's last one). Undefined for fewer than 4 words."""
  tokens = _words(text)
  if len(tokens) < 4:
    raise registry.Undefined(f"{len(tokens)} words, too few for a 4-gram")
  out = 1.0
  for n in (2, 3, 4):
    grams = _ngrams(tokens, n)
    out *= len(set(grams)) / len(grams)
  return out


def _pooled(texts: Iterable[str], ns: Sequence[int]) -> tuple[int, dict, dict]:
  """(words, {n: distinct n-grams}, {n: n-grams}) of the texts pooled; no n-gram spans two
  texts. Sets of string tuples cost ~1 us an n-gram, so on a big corpus the n-grams get
  integer ids instead: id_n(i) = rank of (id_{n-1}(i), word(i+n-1)), one np.unique each."""
  if isinstance(texts, str):
    raise registry.MetricError("corpus metrics take a sequence of texts, not one string")
  vocab: dict[str, int] = {}
  seqs = [[vocab.setdefault(w, len(vocab)) for w in lexical_tokens(t)] for t in texts]
  lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
  total = int(lengths.sum())
  words = np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int64, count=total)
  # Position i holds an n-gram iff i + n <= the end of i's text.
  room = np.repeat(np.cumsum(lengths), lengths) - np.arange(total)
  unique, totals = {1: len(vocab)}, {1: total}
  ids = words
  for n in range(2, max(ns) + 1):
    starts = max(total - n + 1, 0)
    keep = room[:starts] >= n
    # Keys stay below total * len(vocab) <= total**2: inside int64 up to 3e9 words.
    keys = ids[:starts] * len(vocab) + words[n - 1:]
    distinct, ranks = np.unique(keys[keep], return_inverse=True)
    ids = np.zeros(starts, dtype=np.int64)
    ids[keep] = ranks.reshape(-1)
    unique[n], totals[n] = len(distinct), int(keep.sum())
  return total, {n: unique[n] for n in ns}, {n: totals[n] for n in ns}


def corpus_distinct_n(texts: Iterable[str], n: int = 2) -> float:
  """Corpus distinct-n (Li et al. 2016 computed it over all responses): distinct n-grams of
  the pooled texts / total words. Texts shorter than n add words but no n-grams."""
  n = _positive_int("n", n, "corpus_distinct_n")
  words, unique, _ = _pooled(texts, (n,))
  if unique[n] == 0:
    raise registry.Undefined(f"no text has {n} words")
  return unique[n] / words


def corpus_unique_ngram_fraction(texts: Iterable[str], n: int = 2) -> float:
  """Corpus unique n-gram fraction: distinct n-grams / n-grams of the texts pooled into one
  multiset (1 - SimCTG's rep-n over the corpus)."""
  n = _positive_int("n", n, "corpus_unique_ngram_fraction")
  _, unique, totals = _pooled(texts, (n,))
  if totals[n] == 0:
    raise registry.Undefined(f"no text has {n} words")
  return unique[n] / totals[n]


def corpus_rep_diversity(texts: Iterable[str]) -> float:
  """Corpus rep-diversity: prod over n = 2..4 of distinct n-grams / n-grams, the n-grams of
  all texts pooled into one multiset, so an n-gram repeated across texts counts as a repeat.
  (SimCTG's script instead sums each text's own distinct count, which ignores repeats across
  texts.)"""
  _, unique, totals = _pooled(texts, (2, 3, 4))
  if totals[4] == 0:
    raise registry.Undefined("no text has 4 words")
  out = 1.0
  for n in (2, 3, 4):
    out *= unique[n] / totals[n]
  return out
