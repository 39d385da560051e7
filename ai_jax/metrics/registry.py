"""The metric registry: name -> factory(**options) -> Scorer.

A Scorer maps a list of texts (plus an optional ScoreContext with the prompts and a
tokenizer) to one float per text. It declares what a higher value means, a version
(recorded beside every score so a changed definition is never mixed with an old one)
and the Python distributions it imports.

Built-in scorers register themselves when their module is imported; `get_scorer`
imports them all first. A user scorer is named by import path, "package.module:attr",
where attr is a Scorer, a factory returning one, or a plain function text -> float
(or (text, prompt) -> float when it has a `prompt` parameter).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import hashlib
import importlib
import inspect
from typing import Any, Callable, Mapping, Sequence

import numpy as np


class MetricError(ValueError):
  """A metric name, option or user scorer that cannot be used; the message says why."""


class Undefined(ValueError):
  """Raised by a scorer for a text on which its metric has no value (e.g. MTLD of an
  empty text). The row gets NaN with the reason, counted apart from real failures."""


@dataclasses.dataclass(frozen=True)
class ScoreContext:
  """What a scorer may read besides the texts (all optional)."""
  prompts: Sequence[str] | None = None
  tokenizer: Any = None  # ai_jax.tokenizer.Tokenizer or anything with .encode(text)


@dataclasses.dataclass(frozen=True)
class Scored:
  """A batch result with per-row failures: values[i] is NaN where errors has i."""
  values: Sequence[float]
  errors: Mapping[int, str] = dataclasses.field(default_factory=dict)


UNDEFINED_PREFIX = "undefined: "


def reason_for(exc: BaseException) -> str:
  """The reason recorded for a row whose scorer raised."""
  if isinstance(exc, Undefined):
    return UNDEFINED_PREFIX + str(exc)
  text = f"{type(exc).__name__}: {exc}"
  return text if len(text) <= 500 else text[:497] + "..."


BatchFn = Callable[[Sequence[str], ScoreContext], "Sequence[float] | Scored"]


@dataclasses.dataclass(frozen=True)
class Scorer:
  name: str
  score_batch: BatchFn
  higher_means: str           # e.g. "longer", "more toxic", "easier to read"
  version: str
  requires: tuple[str, ...] = ()
  description: str = ""       # the definition and its source
  needs_tokenizer: bool = False
  needs_prompts: bool = False
  # Rows passed to one score_batch call (0 = the runner's default chunk, 256 rows, which
  # also paces the progress bar); API clients and models batch further inside.
  batch_size: int = 0
  options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def info(self) -> dict:
    return {"name": self.name, "higher_means": self.higher_means, "version": self.version,
            "requires": list(self.requires), "description": self.description,
            "options": {k: _jsonable(v) for k, v in self.options.items()}}


def _jsonable(v):
  if isinstance(v, (list, tuple)):
    return [_jsonable(x) for x in v]
  return v if isinstance(v, (str, int, float, bool, type(None))) else repr(v)


_FACTORIES: dict[str, Callable[..., Scorer]] = {}
_BUILTIN_MODULES = (
    "ai_jax.metrics.length",
    "ai_jax.metrics.lexical",
    "ai_jax.metrics.readability",
    "ai_jax.metrics.markers",
    "ai_jax.metrics.toxicity",
    "ai_jax.metrics.perspective",
    "ai_jax.metrics.hf_classifier",
    "ai_jax.metrics.descriptives",  # the td_ columns (the textdescriptives extra)
)


def register_factory(name: str, factory: Callable[..., Scorer]) -> Callable[..., Scorer]:
  if name in _FACTORIES and _FACTORIES[name] is not factory:
    raise MetricError(f"metric {name!r} is registered twice")
  _FACTORIES[name] = factory
  return factory


def _doc(fn) -> str:
  return inspect.cleandoc(fn.__doc__ or "").split("\n\n")[0].replace("\n", " ")


def text_metric(name: str, *, higher_means: str, version: str, requires: tuple[str, ...] = (),
                **defaults):
  """Registers fn(text, **options) -> float as a per-text scorer named `name`.

  Keyword defaults become options a config may override (e.g. distinct_n's n)."""
  def wrap(fn):
    def factory(**options):
      unknown = set(options) - set(defaults)
      if unknown:
        raise MetricError(f"metric {name!r} takes options {sorted(defaults)}, "
                          f"got {sorted(unknown)}")
      bound = {**defaults, **options}
      one = functools.partial(fn, **bound)

      def score_batch(texts, context):
        del context
        values, errors = [], {}
        for i, text in enumerate(texts):
          try:
            values.append(one(text))
          except MetricError:
            raise  # a bad option: every row would fail alike, so stop with one message
          except Exception as e:  # noqa: BLE001 -- kept per row; the runner reports it
            values.append(float("nan"))
            errors[i] = reason_for(e)
        return Scored(values, errors)
      return Scorer(name=name, score_batch=score_batch, higher_means=higher_means,
                    version=version, requires=requires, description=_doc(fn), options=bound)
    register_factory(name, factory)
    return fn
  return wrap


def alias(name: str, target: str, **options) -> None:
  """Registers `name` as `target` with fixed options (e.g. distinct_2 = distinct_n, n=2)."""
  def factory(**more):
    scorer = _FACTORIES[target](**{**options, **more})
    return dataclasses.replace(scorer, name=name)
  register_factory(name, factory)


def _load_builtins() -> None:
  for module in _BUILTIN_MODULES:
    importlib.import_module(module)


# --- corpus metrics: one value for a set of texts, against a reference set -----------------


@dataclasses.dataclass(frozen=True)
class CorpusMetric:
  """`compute(corpus, **options) -> float` over an `ai_jax.metrics.corpus.Corpus` (the
  texts, the reference texts and, where `needs_embeddings`, both sets' sentence
  embeddings). A bootstrap interval comes from `corpus.corpus_profile`."""
  name: str
  compute: Callable[..., float]
  higher_means: str
  version: str
  needs_reference: bool = False
  needs_embeddings: bool = False
  description: str = ""
  options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __call__(self, corpus) -> float:
    return float(self.compute(corpus, **self.options))

  def info(self) -> dict:
    return {"name": self.name, "higher_means": self.higher_means, "version": self.version,
            "options": {k: _jsonable(v) for k, v in sorted(self.options.items())}}


# name -> (fn, CorpusMetric fields other than compute, options and description, defaults)
_CORPUS: dict[str, tuple[Callable[..., float], dict, dict]] = {}
_CORPUS_MODULE = "ai_jax.metrics.corpus"


def corpus_metric(name: str, *, higher_means: str, version: str, needs_reference: bool = False,
                  needs_embeddings: bool = False, **defaults):
  """Registers fn(corpus, **options) -> float as the corpus metric `name`; keyword
  defaults are the options a config may override."""
  def wrap(fn):
    if name in _CORPUS and _CORPUS[name][0] is not fn:
      raise MetricError(f"corpus metric {name!r} is registered twice")
    fields = dict(name=name, higher_means=higher_means, version=version,
                  needs_reference=needs_reference, needs_embeddings=needs_embeddings)
    _CORPUS[name] = (fn, fields, defaults)
    return fn
  return wrap


def corpus_names() -> list[str]:
  importlib.import_module(_CORPUS_MODULE)
  return sorted(_CORPUS)


def get_corpus_metric(name: str, **options) -> CorpusMetric:
  """The corpus metric `name` with its options (unknown options are an error)."""
  importlib.import_module(_CORPUS_MODULE)
  if name not in _CORPUS:
    raise MetricError(f"unknown corpus metric {name!r}; known corpus metrics: "
                      f"{', '.join(sorted(_CORPUS))}")
  fn, fields, defaults = _CORPUS[name]
  unknown = set(options) - set(defaults)
  if unknown:
    raise MetricError(f"corpus metric {name!r} takes options {sorted(defaults)}, got "
                      f"{sorted(unknown)}")
  return CorpusMetric(compute=fn, description=_doc(fn), options={**defaults, **options},
                      **fields)


def known_names() -> list[str]:
  _load_builtins()
  return sorted(_FACTORIES)


def _source_hash(obj) -> str:
  try:
    src = inspect.getsource(obj)
  except (OSError, TypeError):
    src = repr(obj)
  return hashlib.sha256(src.encode()).hexdigest()[:12]


def _from_user_function(path: str, fn: Callable) -> Scorer:
  params = inspect.signature(fn).parameters
  wants_prompt = "prompt" in params

  def score_batch(texts, context):
    if wants_prompt:
      return [fn(t, prompt=p) for t, p in zip(texts, context.prompts)]
    return [fn(t) for t in texts]
  return Scorer(name=path, score_batch=score_batch,
                higher_means=getattr(fn, "higher_means", "more (user-defined)"),
                version=getattr(fn, "version", None) or f"src-{_source_hash(fn)}",
                description=_doc(fn) or f"user function {path}", needs_prompts=wants_prompt)


def _user_scorer(path: str, options: Mapping[str, Any]) -> Scorer:
  from ai_jax.imports import resolve_import_path
  try:
    obj = resolve_import_path(path, what="user metric")
  except ValueError as e:
    raise MetricError(str(e)) from e
  if isinstance(obj, Scorer):
    if options:
      raise MetricError(f"user metric {path!r} is a Scorer instance and takes no options")
    return obj
  if getattr(obj, "is_scorer_factory", False):
    scorer = obj(**options)
    if not isinstance(scorer, Scorer):
      raise MetricError(f"user metric factory {path!r} returned {type(scorer).__name__}, "
                        "not a Scorer")
    return scorer
  if callable(obj):
    if options:
      raise MetricError(f"user metric {path!r} is a plain function and takes no options; "
                        "wrap it in a factory marked is_scorer_factory = True")
    return _from_user_function(path, obj)
  raise MetricError(f"user metric {path!r} is a {type(obj).__name__}, not a callable")


def get_scorer(name: str, **options) -> Scorer:
  """The scorer for a registered name or a user import path ("pkg.module:fn")."""
  if ":" in name:
    return _user_scorer(name, options)
  _load_builtins()
  if name not in _FACTORIES:
    if name in corpus_names():
      raise MetricError(f"{name!r} is a corpus metric (one value for a set of texts against "
                        "a reference set), not a per-text scorer: use "
                        f"ai_jax.metrics.corpus.corpus_profile(texts, reference, "
                        f"metrics={{{name!r}: {{}}}}, ...)")
    close = difflib.get_close_matches(name, _FACTORIES, n=3, cutoff=0.8)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise MetricError(f"unknown metric {name!r}{hint}; known metrics: "
                      f"{', '.join(sorted(_FACTORIES))}; or name a user function as "
                      "'package.module:function'")
  return _FACTORIES[name](**options)


def _parse_value(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # bare words and paths stay strings: path=/models/toxic-bert


def parse_spec(spec: str) -> tuple[str, str, dict]:
  """'[column=]name[(key=value, ...)]' -> (column, name, options).

  The column defaults to the name (the function's name for a user path). Values are
  Python literals or bare strings: "tox=hf_classifier(path=/models/tb, label=toxic)",
  "distinct_n(n=3)", "mine=my_pkg.metrics:politeness".
  """
  text = spec.strip()
  options: dict[str, Any] = {}
  if text.endswith(")") and "(" in text:
    text, _, args = text[:-1].partition("(")
    for part in filter(None, (p.strip() for p in args.split(","))):
      key, eq, value = part.partition("=")
      if not eq or not key.strip().isidentifier():
        raise MetricError(f"metric spec {spec!r}: option {part!r} is not key=value")
      options[key.strip()] = _parse_value(value.strip())
  column, eq, name = text.partition("=")
  if not eq:
    name = column
    column = name.rpartition(":")[2] if ":" in name else name
  column, name = column.strip(), name.strip()
  if not column or not name:
    raise MetricError(f"metric spec {spec!r} is empty on one side; write 'name', "
                      "'column=name' or 'name(key=value)'")
  return column, name, options


def scorers_from_specs(specs: Sequence[str]) -> dict[str, Scorer]:
  """column -> Scorer for a list of specs; a repeated column is an error."""
  out: dict[str, Scorer] = {}
  for spec in specs:
    column, name, options = parse_spec(spec)
    if column in out:
      raise MetricError(f"metric column {column!r} appears twice; name one 'other={name}'")
    out[column] = get_scorer(name, **options)
  return out


def as_float_array(values, n: int, name: str) -> np.ndarray:
  out = np.asarray(values, dtype=np.float64).reshape(-1)
  if out.shape[0] != n:
    raise MetricError(f"metric {name!r} returned {out.shape[0]} values for {n} texts")
  return out
