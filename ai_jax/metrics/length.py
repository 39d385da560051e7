"""Length scorers: characters, words, tokens, sentences.

Words and sentences use the textstat-compatible units of text_units.py, so a length
here and a readability index there count the same words.
"""

from __future__ import annotations

from ai_jax.metrics import registry, text_units


@registry.text_metric("length_chars", higher_means="longer", version="1")
def length_chars(text: str) -> float:
  """Number of Unicode code points, whitespace included (len(text))."""
  return float(len(text))


@registry.text_metric("length_words", higher_means="longer", version="1")
def length_words(text: str) -> float:
  """Number of words, as textstat's lexicon_count: punctuation removed, contractions and
  hyphenated words counted once."""
  return float(text_units.count_words(text))


@registry.text_metric("length_sentences", higher_means="longer", version="1")
def length_sentences(text: str) -> float:
  """Number of sentences, as textstat's sentence_count (0 for empty text; runs of <= 2
  words are not counted as sentences)."""
  return float(text_units.count_sentences(text))


def _length_tokens_factory():
  def score_batch(texts, context):
    tokenizer = context.tokenizer
    if tokenizer is None:
      raise registry.MetricError(
          "metric 'length_tokens' needs a tokenizer: set config.tokenizer to 'model' (the "
          "embedded default), a .gguf file or a Hugging Face directory")
    return [float(len(tokenizer.encode(t, add_bos=False))) for t in texts]
  return registry.Scorer(
      name="length_tokens", score_batch=score_batch, higher_means="longer", version="1",
      description=("Number of tokens under the configured tokenizer (no BOS); the tokenizer's "
                   "source is recorded in the scores' metrics.json."),
      needs_tokenizer=True)


registry.register_factory("length_tokens", _length_tokens_factory)
