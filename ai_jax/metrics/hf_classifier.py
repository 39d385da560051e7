"""Scores texts with a local Hugging Face sequence-classification checkpoint, in JAX.

`hf_classifier` takes a directory as written by transformers' `save_pretrained`
(config.json, tokenizer files, model.safetensors or a sharded index) holding a BERT,
RoBERTa / XLM-RoBERTa / CamemBERT or DistilBERT *ForSequenceClassification model, and
returns the probability of one output label per text: e.g. `unitary/toxic-bert`
(multi-label, sigmoid, label "toxic") or `s-nlp/roberta_toxicity_classifier` (softmax
over neutral/toxic). `toxicity_hf` is the same scorer, described as toxicity.

The encoder is ai_jax's Flax port (`ai_jax.models.encoder`); transformers is used for
the tokenizer only, and imported when a scorer is first used, so that importing
ai_jax.metrics stays light. Texts longer than `max_length` tokens (default 512, or the
model's position limit if smaller) are truncated to their first tokens, special tokens
included, as these classifiers are used in transformers pipelines; the score then
describes the text's beginning only.

Batches are padded to power-of-two lengths (at least 16, at most max_length) and to a
fixed row count, and texts are sorted by length first, so a run compiles few shapes and
pads little.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os

import numpy as np

from ai_jax.metrics.registry import MetricError, Scorer, register_factory

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
_TORCH_NAMES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
# Any one of these lets AutoTokenizer build the tokenizer; the rest only refine it.
_TOKENIZER_MAIN = ("tokenizer.json", "vocab.txt", "vocab.json", "sentencepiece.bpe.model",
                   "spiece.model", "tokenizer.model")
_TOKENIZER_EXTRA = ("tokenizer_config.json", "special_tokens_map.json", "merges.txt",
                    "added_tokens.json")
_OPTIONS = ("path", "label", "activation", "max_length", "batch_size", "dtype")
_DEFAULT_MAX_LENGTH = 512
_MIN_BUCKET = 16


@dataclasses.dataclass(frozen=True)
class _Checkpoint:
  path: str
  hf_config: dict
  weight_files: tuple[str, ...]
  digest: str        # config.json bytes + names and sizes of weight and tokenizer files


def _inspect(path) -> _Checkpoint:
  """Checks the directory without loading weights; MetricError says what is missing."""
  if not path:
    raise MetricError("hf_classifier needs option path=<local directory with config.json, "
                      "tokenizer files and model.safetensors>")
  path = os.path.abspath(os.path.expanduser(os.fspath(path)))
  if not os.path.isdir(path):
    what = "is not a directory" if os.path.exists(path) else "does not exist"
    raise MetricError(f"hf_classifier path {path} {what}; give the directory a transformers "
                      "save_pretrained wrote (config.json, tokenizer files, model.safetensors)")
  config_path = os.path.join(path, CONFIG_NAME)
  if not os.path.isfile(config_path):
    raise MetricError(f"hf_classifier path {path} has no {CONFIG_NAME}")
  with open(config_path, "rb") as f:
    config_bytes = f.read()
  try:
    hf_config = json.loads(config_bytes)
  except ValueError as e:
    raise MetricError(f"{config_path} is not valid JSON ({e})") from e

  if os.path.isfile(os.path.join(path, WEIGHTS_NAME)):
    weight_files: tuple[str, ...] = (WEIGHTS_NAME,)
  elif os.path.isfile(os.path.join(path, INDEX_NAME)):
    with open(os.path.join(path, INDEX_NAME)) as f:
      weight_files = tuple(sorted(set(json.load(f)["weight_map"].values())))
    absent = [w for w in weight_files if not os.path.isfile(os.path.join(path, w))]
    if absent:
      raise MetricError(f"hf_classifier path {path}: {INDEX_NAME} names shards that are "
                        f"missing: {absent}")
  elif any(os.path.isfile(os.path.join(path, n)) for n in _TORCH_NAMES):
    raise MetricError(
        f"hf_classifier path {path} has only PyTorch weights (pytorch_model.bin); ai_jax reads "
        "safetensors only. Convert once with transformers: AutoModelForSequenceClassification"
        f".from_pretrained(path).save_pretrained(path, safe_serialization=True)")
  else:
    raise MetricError(f"hf_classifier path {path} has no {WEIGHTS_NAME} (nor {INDEX_NAME})")

  if not any(os.path.isfile(os.path.join(path, n)) for n in _TOKENIZER_MAIN):
    raise MetricError(f"hf_classifier path {path} has no tokenizer files (one of "
                      f"{', '.join(_TOKENIZER_MAIN)}); save the tokenizer there too "
                      "(tokenizer.save_pretrained(path))")

  h = hashlib.sha256(config_bytes)
  for name in weight_files + _TOKENIZER_MAIN + _TOKENIZER_EXTRA:
    full = os.path.join(path, name)
    if os.path.isfile(full):
      h.update(f"\0{name}\0{os.path.getsize(full)}".encode())
  return _Checkpoint(path, hf_config, weight_files, h.hexdigest()[:12])


def _read_weights(ckpt: _Checkpoint) -> dict[str, np.ndarray]:
  import safetensors.numpy
  state_dict: dict[str, np.ndarray] = {}
  for name in ckpt.weight_files:
    full = os.path.join(ckpt.path, name)
    try:
      state_dict.update(safetensors.numpy.load_file(full))
    except TypeError:
      # numpy has no bfloat16, which safetensors.numpy cannot return; our reader maps it.
      from ai_jax.weights.safetensors_io import read_safetensors
      state_dict.update(read_safetensors(full, dtype=None))
    except Exception as e:  # noqa: BLE001 -- safetensors raises its own error types
      raise MetricError(f"cannot read {full} ({e})") from e
  return state_dict


class _Model:
  """Tokenizer, encoder params and the jitted forward for one checkpoint and dtype."""

  def __init__(self, ckpt: _Checkpoint, dtype: str):
    import jax

    from ai_jax.models import encoder
    try:
      self.config = encoder.EncoderConfig.from_hf_config(ckpt.hf_config, dtype=dtype)
      params = encoder.params_from_hf(self.config, _read_weights(ckpt))
    except ValueError as e:
      if isinstance(e, MetricError):
        raise
      raise MetricError(f"hf_classifier checkpoint {ckpt.path}: {e}") from e
    self.params = jax.tree.map(lambda w: jax.numpy.asarray(w, dtype=dtype), params)
    self.forward = jax.jit(encoder.EncoderClassifier(self.config).apply)
    try:
      from transformers import AutoTokenizer
      self.tokenizer = AutoTokenizer.from_pretrained(ckpt.path, local_files_only=True)
    except Exception as e:  # noqa: BLE001 -- transformers raises many types here
      raise MetricError(f"hf_classifier: cannot load the tokenizer from {ckpt.path} ({e})") from e

  def logits(self, ids: list[list[int]], batch_size: int, max_length: int) -> np.ndarray:
    """[len(ids), num_labels] float32 logits; rows are sorted by length to pad little."""
    out = np.zeros((len(ids), self.config.num_labels), np.float32)
    order = np.argsort([len(x) for x in ids], kind="stable")
    for start in range(0, len(ids), batch_size):
      rows = order[start:start + batch_size]
      B = min(batch_size, _next_pow2(len(rows)))
      T = min(max_length, max(_MIN_BUCKET, _next_pow2(max(len(ids[r]) for r in rows))))
      # Right padding with the config's pad id: RoBERTa numbers positions from the ids,
      # and trailing padding leaves the real tokens' positions as transformers has them.
      tokens_BT = np.full((B, T), self.config.pad_token_id, np.int32)
      mask_BT = np.zeros((B, T), bool)
      for i, r in enumerate(rows):
        tokens_BT[i, :len(ids[r])] = ids[r]
        mask_BT[i, :len(ids[r])] = True
      logits_BC = self.forward({"params": self.params}, tokens_BT, mask_BT)
      out[rows] = np.asarray(logits_BC)[:len(rows)]
    return out


def _next_pow2(n: int) -> int:
  return 1 << max(0, int(n) - 1).bit_length()


@functools.lru_cache(maxsize=4)
def _load(path: str, digest: str, dtype: str) -> _Model:
  # Keyed by the digest too, so a checkpoint rewritten in place is loaded again.
  return _Model(_inspect(path), dtype)


def _labels(hf_config: dict) -> dict[int, str]:
  id2label = hf_config.get("id2label") or {}
  if id2label:
    return {int(k): str(v) for k, v in id2label.items()}
  return {i: f"LABEL_{i}" for i in range(int(hf_config.get("num_labels", 2)))}


def _label_index(label, labels: dict[int, str], path: str) -> int:
  by_name = {name: i for i, name in labels.items()}
  if isinstance(label, str) and label in by_name:
    return by_name[label]
  if isinstance(label, int) and not isinstance(label, bool) and label in labels:
    return label
  listing = ", ".join(f"{i}={name!r}" for i, name in sorted(labels.items()))
  raise MetricError(f"hf_classifier: label {label!r} is not an output of the model at {path}; "
                    f"its labels (config.json id2label) are {listing}; pass label=<name>")


def _make_scorer(name: str, higher_means: str | None, options: dict) -> Scorer:
  unknown = set(options) - set(_OPTIONS)
  if unknown:
    raise MetricError(f"metric {name!r} takes options {list(_OPTIONS)}, got {sorted(unknown)}")
  ckpt = _inspect(options.get("path"))
  label = options.get("label", "toxic")
  activation = options.get("activation", "auto")
  max_length = options.get("max_length")
  batch_size = options.get("batch_size", 32)
  dtype = options.get("dtype", "float32")

  hf = ckpt.hf_config
  labels = _labels(hf)
  index = _label_index(label, labels, ckpt.path)
  if activation == "auto":
    multi = hf.get("problem_type") == "multi_label_classification" or len(labels) == 1
    activation = "sigmoid" if multi else "softmax"
  if activation not in ("sigmoid", "softmax"):
    raise MetricError(f"metric {name!r}: activation must be 'auto', 'sigmoid' or 'softmax', "
                      f"got {activation!r}")
  if dtype not in ("float32", "bfloat16"):
    raise MetricError(f"metric {name!r}: dtype must be 'float32' or 'bfloat16', got {dtype!r}")
  if not isinstance(batch_size, int) or batch_size < 1:
    raise MetricError(f"metric {name!r}: batch_size must be a positive integer, got "
                      f"{batch_size!r}")
  try:
    from ai_jax.models.encoder import EncoderConfig
    capacity = EncoderConfig.from_hf_config(hf).max_tokens
  except (ValueError, KeyError) as e:
    what = f"missing key {e}" if isinstance(e, KeyError) else str(e)
    raise MetricError(f"hf_classifier checkpoint {ckpt.path}: unsupported config.json "
                      f"({what})") from e
  if max_length is None:
    max_length = min(_DEFAULT_MAX_LENGTH, capacity)
  if not isinstance(max_length, int) or not 2 <= max_length <= capacity:
    raise MetricError(f"metric {name!r}: max_length must be an integer in [2, {capacity}] "
                      f"(the model's position limit), got {max_length!r}")

  def score_batch(texts, context):
    del context
    if not len(texts):
      return []
    model = _load(ckpt.path, ckpt.digest, dtype)
    ids = model.tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    logits_NC = model.logits(ids, batch_size, max_length).astype(np.float64)
    if activation == "sigmoid":
      return (1.0 / (1.0 + np.exp(-logits_NC[:, index]))).tolist()
    shifted_NC = logits_NC - logits_NC.max(axis=1, keepdims=True)
    probs_NC = np.exp(shifted_NC) / np.exp(shifted_NC).sum(axis=1, keepdims=True)
    return probs_NC[:, index].tolist()

  label_name = labels[index]
  arch = (hf.get("architectures") or [hf.get("model_type", "?")])[0]
  version = f"1-{ckpt.digest}-{label_name}-{activation}-L{max_length}"
  if dtype != "float32":
    version += f"-{dtype}"
  return Scorer(
      name=name, score_batch=score_batch,
      higher_means=higher_means or f"more {label_name!r} (classifier probability)",
      version=version, requires=("transformers", "safetensors"),
      description=(f"{activation} probability of label {label_name!r} from the {arch} "
                   f"checkpoint at {ckpt.path} (ai_jax Flax encoder); texts are truncated to "
                   f"their first {max_length} tokens"),
      options={"path": ckpt.path, "label": label_name, "activation": activation,
               "max_length": max_length, "batch_size": batch_size, "dtype": dtype})


def hf_classifier(**options) -> Scorer:
  """Probability of one label of a local Hugging Face sequence classifier (see module doc)."""
  return _make_scorer("hf_classifier", None, options)


def toxicity_hf(**options) -> Scorer:
  """hf_classifier with label "toxic": a Detoxify-style toxicity checkpoint on disk."""
  return _make_scorer("toxicity_hf", "more toxic (classifier probability)", options)


register_factory("hf_classifier", hf_classifier)
register_factory("toxicity_hf", toxicity_hf)
