"""hf_classifier / toxicity_hf and the Flax encoder port against transformers + torch.

Tiny random checkpoints (BERT multi-label, RoBERTa softmax) with tiny tokenizers are saved
with save_pretrained; our logits and probabilities must match torch's on padded batches.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from ai_jax.metrics import hf_classifier, registry  # noqa: E402
from ai_jax.metrics.registry import MetricError  # noqa: E402
from ai_jax.models import encoder  # noqa: E402

# One worker runs this module (pytest-xdist --dist loadgroup), so its module fixtures are
# built once.
pytestmark = pytest.mark.xdist_group("hf_classifiers")

WORDS = ("the a you are is stupid idiot nice day hello world good bad people this that what "
         "i love hate it so very much not").split()
TEXTS = [
    "",
    "hello",
    "You are a stupid idiot!",
    "what a nice day",
    "I love this so very much, thank you.",
    "people are good people are bad " * 3,
    "x",
    "Ünïcödé and émojis 🙂 are fine too",
    "that is not what i meant",
    "hate hate hate",
    "the " * 40,  # longer than max_length (64): truncated
    "a b c d e f g",
    "   leading and trailing spaces   ",
    "Numbers 12345 and punctuation?!...",
    "you",
    "good day world, hello people",
    "it is what it is",
    "stupid " * 12,
    "newlines\nand\ttabs",
    "this that the other thing " * 5,
]


def _randomize(model, seed):
  # transformers' init gives near-zero logits; larger random weights make the comparison
  # meaningful (logits of order 1) and exercise the LayerNorm affine params.
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=gen)
      if "norm" in name.lower() and name.endswith("weight"):
        p.copy_(1 + 0.1 * noise)
      else:
        p.copy_(0.2 * noise)
  return model.eval()


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("toxic_bert")
  letters = "abcdefghijklmnopqrstuvwxyz"
  vocab = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
           + list(letters + "0123456789.,!?'") + [f"##{c}" for c in letters])
  tok = transformers.BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})
  config = transformers.BertConfig(
      vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
      intermediate_size=37, max_position_embeddings=64, hidden_act="gelu",
      id2label={0: "toxic", 1: "insult"}, label2id={"toxic": 0, "insult": 1},
      problem_type="multi_label_classification")
  model = _randomize(transformers.BertForSequenceClassification(config), seed=0)
  model.save_pretrained(d)
  tok.save_pretrained(d)
  return str(d), model, tok


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("roberta_toxicity")
  bpe = tokenizers.ByteLevelBPETokenizer()
  bpe.train_from_iterator([" ".join(WORDS), "hello world you are stupid", "what a nice day"],
                          vocab_size=300, min_frequency=1,
                          special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
  bpe.save_model(str(d))
  tok = transformers.RobertaTokenizer(vocab=str(d / "vocab.json"), merges=str(d / "merges.txt"))
  config = transformers.RobertaConfig(
      vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
      intermediate_size=37, max_position_embeddings=66, type_vocab_size=1, pad_token_id=1,
      bos_token_id=0, eos_token_id=2, hidden_act="gelu_new", layer_norm_eps=1e-5,
      id2label={0: "neutral", 1: "toxic"}, label2id={"neutral": 0, "toxic": 1})
  model = _randomize(transformers.RobertaForSequenceClassification(config), seed=1)
  model.save_pretrained(d)
  tok.save_pretrained(d)
  return str(d), model, tok


def _torch_logits(model, tok, texts, max_length):
  batch = tok(list(texts), padding=True, truncation=True, max_length=max_length,
              return_tensors="pt")
  with torch.no_grad():
    return model(**batch).logits.double().numpy()


@pytest.mark.parametrize("which", ["bert", "roberta"])
def test_logits_and_probabilities_match_torch(which, bert_dir, roberta_dir):
  path, model, tok = {"bert": bert_dir, "roberta": roberta_dir}[which]
  scorer = hf_classifier.hf_classifier(path=path, batch_size=8)
  assert scorer.options["max_length"] == 64  # the model's position limit, below 512
  ours = hf_classifier._load(scorer.options["path"], hf_classifier._inspect(path).digest,
                             "float32")
  ids = ours.tokenizer(TEXTS, truncation=True, max_length=64)["input_ids"]
  assert {len(x) for x in ids} >= {2, 64}  # empty text -> [CLS][SEP]; long text truncated
  ref = _torch_logits(model, tok, TEXTS, 64)
  got = ours.logits(ids, batch_size=8, max_length=64)
  diff = np.abs(got - ref).max()
  print(f"{which}: max abs logit difference {diff:.2e} (logit scale {np.abs(ref).max():.2f})")
  assert np.abs(ref).max() > 0.5 and diff < 1e-5

  probs = np.asarray(scorer.score_batch(TEXTS, registry.ScoreContext()))
  if which == "bert":  # multi-label: sigmoid of "toxic" (index 0)
    assert scorer.options["activation"] == "sigmoid"
    want = 1 / (1 + np.exp(-ref[:, 0]))
  else:                # single-label: softmax over neutral/toxic, take "toxic" (index 1)
    assert scorer.options["activation"] == "softmax"
    want = np.exp(ref[:, 1]) / np.exp(ref).sum(axis=1)
  np.testing.assert_allclose(probs, want, atol=2e-6)
  assert scorer.score_batch([], registry.ScoreContext()) == []


def test_label_activation_and_toxicity_alias(bert_dir, roberta_dir):
  path, model, tok = bert_dir
  ref = _torch_logits(model, tok, TEXTS[:5], 64)
  insult = hf_classifier.hf_classifier(path=path, label="insult", batch_size=8)
  np.testing.assert_allclose(insult.score_batch(TEXTS[:5], None), 1 / (1 + np.exp(-ref[:, 1])),
                             atol=2e-6)
  soft = hf_classifier.hf_classifier(path=path, activation="softmax", batch_size=8)
  np.testing.assert_allclose(soft.score_batch(TEXTS[:5], None),
                             np.exp(ref[:, 0]) / np.exp(ref).sum(axis=1), atol=2e-6)

  tox_bert = registry.get_scorer("toxicity_hf", path=path, batch_size=8)
  tox_roberta = registry.get_scorer("toxicity_hf", path=roberta_dir[0], batch_size=8)
  assert registry._FACTORIES["hf_classifier"] is hf_classifier.hf_classifier
  assert tox_bert.name == "toxicity_hf" and tox_bert.options["label"] == "toxic"
  assert tox_bert.higher_means == "more toxic (classifier probability)"
  # The version pins the checkpoint and the scored label / activation.
  versions = {tox_bert.version, tox_roberta.version, insult.version, soft.version}
  assert len(versions) == 4
  assert hf_classifier.hf_classifier(path=path, batch_size=8).version == tox_bert.version


def test_truncation_matches_hf_tokenizer(bert_dir):
  path, model, tok = bert_dir
  scorer = hf_classifier.hf_classifier(path=path, max_length=20, batch_size=8)
  long_a = "you are a stupid idiot " * 10
  long_b = long_a + " and more words that are cut off anyway"
  hf_ids = tok([long_a, long_b], truncation=True, max_length=20)["input_ids"]
  assert len(hf_ids[0]) == 20 and hf_ids[0][-1] == tok.sep_token_id and hf_ids[0] == hf_ids[1]
  got = scorer.score_batch([long_a, long_b, "short text"], None)
  ref = _torch_logits(model, tok, [long_a, "short text"], 20)
  np.testing.assert_allclose(got, 1 / (1 + np.exp(-ref[[0, 0, 1], 0])), atol=2e-6)
  assert got[0] == got[1]
  assert "first 20 tokens" in scorer.description


def test_sharded_checkpoint(bert_dir, tmp_path):
  path, model, tok = bert_dir
  model.save_pretrained(tmp_path, max_shard_size="20KB")
  tok.save_pretrained(tmp_path)
  assert os.path.exists(tmp_path / "model.safetensors.index.json")
  a = hf_classifier.hf_classifier(path=path, batch_size=8).score_batch(TEXTS[:4], None)
  b = hf_classifier.hf_classifier(path=str(tmp_path), batch_size=8).score_batch(TEXTS[:4], None)
  np.testing.assert_allclose(a, b, atol=1e-7)


@pytest.mark.parametrize("kind", ["distilbert", "xlm-roberta"])
def test_other_architectures_logits(kind):
  if kind == "distilbert":
    config = transformers.DistilBertConfig(
        vocab_size=61, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=32,
        num_labels=3)
    model = transformers.DistilBertForSequenceClassification(config)
  else:
    config = transformers.XLMRobertaConfig(
        vocab_size=61, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=34, type_vocab_size=1, pad_token_id=1,
        num_labels=3)
    model = transformers.XLMRobertaForSequenceClassification(config)
  model = _randomize(model, seed=2)
  cfg = encoder.EncoderConfig.from_hf_config(config.to_dict())
  params = encoder.params_from_hf(cfg, {k: v.numpy() for k, v in model.state_dict().items()})
  rng = np.random.default_rng(0)
  lengths = [1, 5, 16, 9]
  tokens = np.full((4, 16), cfg.pad_token_id, np.int64)
  mask = np.zeros((4, 16), np.int64)
  for b, n in enumerate(lengths):
    tokens[b, :n] = rng.integers(3, 61, n)
    mask[b, :n] = 1
  with torch.no_grad():
    ref = model(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask)).logits.numpy()
  got = encoder.EncoderClassifier(cfg).apply({"params": params}, tokens.astype(np.int32),
                                             mask.astype(bool))
  assert np.abs(ref).max() > 0.5
  np.testing.assert_allclose(np.asarray(got), ref, atol=1e-5)


def test_errors(bert_dir, tmp_path):
  path = bert_dir[0]
  with pytest.raises(MetricError, match="needs option path"):
    hf_classifier.hf_classifier()
  missing = str(tmp_path / "nowhere")
  with pytest.raises(MetricError, match=f"{missing} does not exist"):
    hf_classifier.hf_classifier(path=missing)
  with pytest.raises(MetricError, match=r"label 'obscene'.*'toxic'.*'insult'"):
    hf_classifier.hf_classifier(path=path, label="obscene")
  with pytest.raises(MetricError, match="takes options"):
    hf_classifier.hf_classifier(path=path, lable="toxic")
  with pytest.raises(MetricError, match=r"max_length must be an integer in \[2, 64\]"):
    hf_classifier.hf_classifier(path=path, max_length=512)
  with pytest.raises(MetricError, match="activation"):
    hf_classifier.hf_classifier(path=path, activation="relu")

  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(MetricError, match=f"{empty} has no config.json"):
    hf_classifier.hf_classifier(path=str(empty))

  torch_only = tmp_path / "torch_only"
  torch_only.mkdir()
  for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
    shutil.copy(os.path.join(path, name), torch_only / name)
  (torch_only / "pytorch_model.bin").write_bytes(b"not really")
  with pytest.raises(MetricError, match=r"only PyTorch weights.*safe_serialization=True"):
    hf_classifier.hf_classifier(path=str(torch_only))

  no_tok = tmp_path / "no_tokenizer"
  no_tok.mkdir()
  for name in ("config.json", "model.safetensors"):
    shutil.copy(os.path.join(path, name), no_tok / name)
  with pytest.raises(MetricError, match="no tokenizer files"):
    hf_classifier.hf_classifier(path=str(no_tok))

  # A bare BertModel checkpoint (no classification head) fails at load with the reason.
  headless = tmp_path / "headless"
  shutil.copytree(path, headless)
  config = json.loads((headless / "config.json").read_text())
  transformers.BertModel(transformers.BertConfig(**config)).save_pretrained(headless)
  scorer = hf_classifier.hf_classifier(path=str(headless))
  with pytest.raises(MetricError, match="ForSequenceClassification"):
    scorer.score_batch(["hi"], None)


def test_import_does_not_load_transformers():
  code = ("import sys, ai_jax.metrics.hf_classifier, ai_jax.models.encoder; "
          "assert 'transformers' not in sys.modules and 'torch' not in sys.modules")
  subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(
      os.path.dirname(os.path.abspath(__file__))))
