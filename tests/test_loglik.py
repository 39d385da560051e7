"""The batched log-likelihood scorer (profiling/loglik.py) against transformers+torch.

Tiny random checkpoints of every family (Llama, Qwen 2, Gemma 3 with a sliding window the
items cross), written by transformers; the reference scores each (context, option) pair
alone, as lm-eval-harness does: one full forward of context + option, log-softmax, the
option's tokens summed. Ours shares each context's prefill among its options, buckets the
lengths and pads the batches; the sums must agree to 1e-3 in float32.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from ai_jax.loading import LoadedModel, place_params
from ai_jax.profiling import loglik
from ai_jax.sharding import mesh as mesh_lib
from conftest import CharTokenizer, load_hf_dir
from test_model_families import VARIANTS, _torch_model

TOL = 1e-3
LLAMA = dict(vocab_size=259, hidden_size=64, intermediate_size=96, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
             num_hidden_layers=2, bos_token_id=1, eos_token_id=2, pad_token_id=0,
             initializer_range=0.1)


def _groups(seed=0, n=23):
  """Contexts of 1..30 tokens with 1..4 options of 1..14 tokens: several shape buckets."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    ctx = tuple(int(t) for t in rng.integers(3, 259, rng.integers(1, 31)))
    opts = tuple(tuple(int(t) for t in rng.integers(3, 259, rng.integers(1, 15)))
                 for _ in range(rng.integers(1, 5)))
    out.append(loglik.Group(context=ctx, options=opts))
  return out


def _reference(torch_model, groups):
  sums = []
  with torch.no_grad():
    for g in groups:
      row = []
      for o in g.options:
        ids = torch.as_tensor([list(g.context) + list(o)])
        logp = torch.log_softmax(torch_model(ids).logits.double(), -1)[0]
        n = len(g.context)
        row.append(float(sum(logp[n - 1 + a, t] for a, t in enumerate(o))))
      sums.append(np.asarray(row))
  return sums


@pytest.fixture(scope="module")
def families(tmp_path_factory):
  """name -> (torch model, LoadedModel on no mesh)."""
  torch.manual_seed(0)
  llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA)).eval()
  out = {}
  for name, model in (("llama", llama), ("qwen2", _torch_model("qwen2_tied")),
                      ("gemma3", _torch_model("gemma3"))):
    path = tmp_path_factory.mktemp(name)
    model.save_pretrained(path)
    config, params = load_hf_dir(path)
    out[name] = (model, LoadedModel(config=config, params=params, tokenizer=CharTokenizer(),
                                    mesh=None, source=str(path)))
  return out


@pytest.mark.parametrize("family,program", [("llama", "auto"), ("llama", "plain"),
                                            ("qwen2", "auto"), ("gemma3", "auto")])
def test_sums_match_transformers(families, family, program, monkeypatch):
  torch_model, model = families[family]
  # "auto" picks per group: both programs run on these groups (checked); "plain" forces
  # the plain one for every group.
  ratio = {"auto": loglik.PLAIN_COST_RATIO, "plain": 1e9}[program]
  monkeypatch.setattr(loglik, "PLAIN_COST_RATIO", ratio)
  programs = []
  compiled = loglik.compiled_score_rows
  monkeypatch.setattr(loglik, "compiled_score_rows",
                      lambda *a: programs.append(a[-1]) or compiled(*a))
  groups = _groups()
  ref = _reference(torch_model, groups)
  # Small batches: several batches per shape, the last one filled up with a copy.
  got = loglik.score_groups(model, groups, loglik.ScoringOptions(batch_tokens=64,
                                                                 max_contexts=3))
  diff = max(float(np.max(np.abs(s.sum_J - r))) for s, r in zip(got, ref))
  print(f"\n{family} ({program}): max |ai_jax - torch| summed log-likelihood {diff:.2e}")
  assert diff <= TOL
  assert set(programs) == ({True, False} if program == "auto" else {False})
  assert all(list(s.num_tokens_J) == [len(o) for o in g.options] for s, g in zip(got, groups))
  assert np.allclose(got[0].mean_J, got[0].sum_J / got[0].num_tokens_J)
  # Not a constant: options' sums differ from each other.
  assert np.std(np.concatenate([s.sum_J for s in got])) > 1.0


@pytest.mark.parametrize("shape", [(4, 2)])
def test_same_on_a_mesh(families, shape):
  _, model = families["llama"]
  mesh = mesh_lib.make_mesh(shape)
  sharded = LoadedModel(config=model.config, params=place_params(model.params, model.config,
                                                                 mesh),
                        tokenizer=model.tokenizer, mesh=mesh, source=model.source)
  groups = _groups(seed=1, n=11)
  plain = loglik.score_groups(model, groups)
  on_mesh = loglik.score_groups(sharded, groups)
  assert all(s.sum_J is not None for s in on_mesh)
  for a, b in zip(plain, on_mesh):
    np.testing.assert_allclose(a.sum_J, b.sum_J, atol=1e-4)


def test_too_long_policies(families):
  _, model = families["llama"]  # 64 positions
  long = loglik.Group(context=tuple(range(3, 63)), options=((5, 6, 7, 8, 9),))
  short = loglik.Group(context=(4, 5), options=((6,), (7, 8)))
  skipped = loglik.score_groups(model, [long, short])
  assert skipped[0].sum_J is None and skipped[1].sum_J is not None
  cut = loglik.score_groups(model, [long], loglik.ScoringOptions(too_long="truncate"))
  assert cut[0].truncated == 60 + 5 - 64
  alone = loglik.score_groups(model, [loglik.Group(long.context[1:], long.options)])
  np.testing.assert_allclose(cut[0].sum_J, alone[0].sum_J, atol=1e-5)
  with pytest.raises(loglik.ItemTooLongError, match="item q7 needs 65 positions"):
    loglik.score_groups(model, [long], loglik.ScoringOptions(too_long="error"), names=["q7"])
  with pytest.raises(ValueError, match="empty context or option"):
    loglik.score_groups(model, [loglik.Group(context=(4,), options=((5,), ()))])
  with pytest.raises(ValueError, match="too_long='drop'"):
    loglik.ScoringOptions(too_long="drop")


def test_encode_group_tokenises_in_place():
  tok = CharTokenizer()
  g = loglik.encode_group(tok, "The cat ", ["sat.", "ran."])
  # The trailing space moves to the options; the options follow the context's ids.
  assert g.context == tuple(tok.encode("The cat"))
  assert g.options == (tuple(tok.encode(" sat.")), tuple(tok.encode(" ran.")))
  empty = loglik.encode_group(tok, "", ["A sentence."])
  assert empty.context == (tok.bos_id,) and empty.options == (tuple(tok.encode("A sentence.")),)
