"""The Llama port against transformers' PyTorch LlamaForCausalLM (the reference), on CPU.

* Golden parity on the embedded SmolLM2-135M-Instruct GGUF: ai_jax logits vs torch logits
  of the same weights (exported by `export_hf`), and the exported tokenizer vs ours.
* Tiny random Llamas (untied, tied, llama3 and linear RoPE scaling): HF checkpoint ->
  ai_jax -> logits equal torch's; ai_jax -> HF checkpoint -> the very same torch weights.
* KV cache: prefill + one-token steps == one full forward; a left-padded batch == each
  prompt alone.
* bfloat16 compute stays close to float32; config errors are ValueErrors that say why.

Everything is float32 unless stated; tolerances are absolute, on raw logits.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from ai_jax import loading
from ai_jax import models
from ai_jax.sampling import decode
from ai_jax.weights import convert, safetensors_io
from conftest import load_hf_dir, requires_embedded

EMBEDDED_TOL = 1e-3   # 30 layers, 576 wide, logits up to ~40: f32 summation-order noise
TINY_TOL = 1e-4


# ----------------------------------------------------------------------------- helpers

@functools.partial(jax.jit, static_argnames=("config",))
def _forward(params, tokens_BT, *, config):
  return decode.forward_logits(params, tokens_BT, config=config)


@functools.partial(jax.jit, static_argnames=("config", "last_only"))
def _apply(params, tokens_BT, positions_BT, mask_BT, cache, write_index, *, config,
           last_only=False):
  """One Llama call; with `cache=None` the plain (masked, causal) forward."""
  return models.apply(params, tokens_BT, positions_BT, mask_BT, cache, write_index,
                      config=config, last_only=last_only)


def _incremental_logits(params, config, tokens, prefill_len, max_len=None):
  """Logits [T, V] of one sequence: prefill `prefill_len` tokens into a cache, then decode
  the rest one token at a time (write_index = t, position t)."""
  T = len(tokens)
  tokens_1T = jnp.asarray([tokens], jnp.int32)
  cache = models.init_cache(config, 1, max_len or T)
  out, cache = _apply(params, tokens_1T[:, :prefill_len],
                      jnp.arange(prefill_len, dtype=jnp.int32)[None],
                      jnp.ones((1, prefill_len), bool), cache, jnp.int32(0), config=config)
  logits = [np.asarray(out[0])]
  for t in range(prefill_len, T):
    out, cache = _apply(params, tokens_1T[:, t:t + 1], jnp.full((1, 1), t, jnp.int32),
                        jnp.ones((1, 1), bool), cache, jnp.int32(t), config=config)
    logits.append(np.asarray(out[0]))
  return np.concatenate(logits, axis=0)


def _max_diff(a, b):
  return float(np.max(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))))


# ----------------------------------------------------------------------------- tiny models

TINY_HF = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
               num_key_value_heads=2, head_dim=16, vocab_size=128, intermediate_size=96,
               max_position_embeddings=256, rms_norm_eps=1e-5, initializer_range=0.1,
               bos_token_id=1, eos_token_id=2)
# original_max_position_embeddings=64 with head_dim 16 / theta 10000 puts the RoPE
# wavelengths (6.3 ... 19869) in all three llama3 regimes: kept, smoothed and divided.
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
LINEAR = {"rope_type": "linear", "factor": 4.0}
VARIANTS = {
    # name: (transformers.LlamaConfig overrides, write config.json the transformers-4 way)
    "untied": (dict(tie_word_embeddings=False, rope_theta=5000.0), False),
    "tied": (dict(tie_word_embeddings=True), False),
    "llama3": (dict(rope_scaling=LLAMA3, rope_theta=10000.0), False),
    "linear": (dict(rope_scaling=LINEAR, rope_theta=10000.0), False),
    "llama3_legacy_json": (dict(rope_scaling=LLAMA3, rope_theta=10000.0), True),
    "linear_legacy_json": (dict(rope_scaling=LINEAR, rope_theta=10000.0), True),
}
EXPECTED_SCALING = {"llama3": ("llama3", 8.0), "linear": ("linear", 4.0)}
TOKENS = np.random.default_rng(0).integers(0, 128, size=(2, 24)).astype(np.int32)


def _tiny_torch(seed=0, **overrides):
  torch.manual_seed(seed)
  cfg = transformers.LlamaConfig(**{**TINY_HF, **overrides})
  model = transformers.LlamaForCausalLM(cfg).eval()
  with torch.no_grad():  # norms init to exactly 1: randomise them so mix-ups show
    for name, p in model.named_parameters():
      if p.ndim == 1:
        p.copy_(torch.randn_like(p) * 0.2 + 1.0)
  return model


def _torch_logits(model, tokens):
  with torch.no_grad():
    return model(torch.as_tensor(np.asarray(tokens), dtype=torch.long)).logits.float().numpy()


def _checkpoint_sd(model):
  """The tensors a checkpoint of `model` stores (tied models list lm_head too)."""
  sd = {k: v.detach().float().numpy().copy() for k, v in model.state_dict().items()}
  if model.config.tie_word_embeddings:
    sd.pop("lm_head.weight", None)
  return sd


def _legacy_config_json(directory):
  """Rewrites config.json as transformers 4.x wrote it: top-level rope_theta and
  rope_scaling, no rope_parameters."""
  path = os.path.join(directory, "config.json")
  with open(path) as f:
    cfg = json.load(f)
  rope = dict(cfg.pop("rope_parameters"))
  cfg["rope_theta"] = rope.pop("rope_theta")
  cfg["rope_scaling"] = rope if rope.get("rope_type", "default") != "default" else None
  with open(path, "w") as f:
    json.dump(cfg, f)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """(torch model, ai_jax config, ai_jax params) of the untied tiny Llama."""
  model = _tiny_torch(**VARIANTS["untied"][0])
  path = tmp_path_factory.mktemp("tiny")
  model.save_pretrained(path)
  config, params = load_hf_dir(path)
  return model, config, params


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_tiny_hf_roundtrip(tmp_path, variant):
  overrides, legacy_json = VARIANTS[variant]
  model = _tiny_torch(seed=1, **overrides)
  model.save_pretrained(tmp_path / "ref")
  if legacy_json:
    _legacy_config_json(tmp_path / "ref")

  # HF checkpoint -> ai_jax: same config, same logits as torch.
  config, params = load_hf_dir(tmp_path / "ref")
  assert config.tie_word_embeddings == model.config.tie_word_embeddings
  assert config.rope_theta == model.config.rope_parameters["rope_theta"]
  assert (config.num_heads, config.num_kv_heads, config.head_dim) == (4, 2, 16)
  kind, factor = EXPECTED_SCALING.get(variant.split("_")[0], (None, 1.0))
  assert (config.rope_scaling_type, config.rope_scaling_factor) == (kind, factor), (
      f"{variant}: rope scaling read as {config.rope_scaling_type!r} x"
      f"{config.rope_scaling_factor} from config.json, expected {kind!r} x{factor}")
  if kind == "llama3":
    assert config.rope_original_max_position == 64
  assert ("lm_head" in params) == (not config.tie_word_embeddings)
  ref = _torch_logits(model, TOKENS)
  ours = np.asarray(_forward(params, jnp.asarray(TOKENS), config=config))
  assert ours.shape == ref.shape and ours.dtype == np.float32
  diff = _max_diff(ours, ref)
  print(f"\n{variant}: max |ai_jax - torch| logit diff {diff:.3e}")
  assert diff <= TINY_TOL, f"{variant}: max |ai_jax - torch| logit diff {diff:.3g}"
  # The config survives our own round trip too.
  assert models.config_from_hf(models.to_hf_config(config)) == config

  # ai_jax -> HF checkpoint: transformers loads the very same weights and config.
  safetensors_io.write_hf_checkpoint(
      tmp_path / "out", models.to_hf_config(config),
      convert.params_to_hf(jax.device_get(params), config))
  loaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "out",
                                                          dtype=torch.float32).eval()
  assert loaded.config.tie_word_embeddings == model.config.tie_word_embeddings
  assert loaded.config.rope_parameters == model.config.rope_parameters
  original, reloaded = _checkpoint_sd(model), _checkpoint_sd(loaded)
  assert sorted(original) == sorted(reloaded)
  for name, w in original.items():
    np.testing.assert_array_equal(reloaded[name], w, err_msg=name)
  if config.tie_word_embeddings:
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
  np.testing.assert_array_equal(_torch_logits(loaded, TOKENS), ref)


def test_tiny_kv_cache_matches_full_forward(tiny):
  _, config, params = tiny
  tokens = TOKENS[0].tolist()
  full = np.asarray(_forward(params, jnp.asarray([tokens]), config=config))[0]
  for prefill_len, max_len in ((5, None), (1, 32)):  # max_len > T: unused slots stay masked
    inc = _incremental_logits(params, config, tokens, prefill_len, max_len)
    assert inc.shape == full.shape
    diff = _max_diff(inc, full)
    assert diff <= TINY_TOL, f"prefill {prefill_len}: incremental vs full diff {diff:.3g}"


def test_tiny_left_padded_batch_matches_each_prompt_alone(tiny):
  _, config, params = tiny
  rng = np.random.default_rng(2)
  prompts = [rng.integers(3, 128, n).tolist() for n in (3, 11, 7, 1)]
  next_tokens = [5, 77, 120, 9]
  T = max(map(len, prompts))
  pad = 0
  tokens = np.array([[pad] * (T - len(p)) + p for p in prompts], np.int32)
  mask = np.array([[False] * (T - len(p)) + [True] * len(p) for p in prompts])
  positions = np.maximum(np.cumsum(mask, axis=-1) - 1, 0).astype(np.int32)
  B = len(prompts)

  # Cache path: prefill the padded batch, then one more token per row.
  cache = models.init_cache(config, B, T + 1)
  last, cache = _apply(params, jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray(mask),
                       cache, jnp.int32(0), config=config, last_only=True)
  step, _ = _apply(params, jnp.asarray(next_tokens, jnp.int32)[:, None],
                   jnp.asarray([[len(p)] for p in prompts], jnp.int32), jnp.ones((B, 1), bool),
                   cache, jnp.int32(T), config=config)
  # Cache-free path with the same input mask.
  plain, _ = _apply(params, jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray(mask),
                    None, 0, config=config)
  for b, (prompt, nxt) in enumerate(zip(prompts, next_tokens)):
    alone = np.asarray(_forward(params, jnp.asarray([prompt + [nxt]]), config=config))[0]
    for name, got, want in (("prefill", last[b, 0], alone[-2]), ("step", step[b, 0], alone[-1]),
                            ("no-cache", plain[b, -1], alone[-2])):
      diff = _max_diff(got, want)
      assert diff <= TINY_TOL, f"row {b} (len {len(prompt)}) {name}: diff {diff:.3g}"


def test_tiny_bfloat16_close_to_float32(tiny):
  """bf16 compute (f32 params, cast per matmul; f32 logits) against f32.

  Tolerance: max |bf16 - f32| <= 0.05 * max |f32 logit| (bf16 has 8 mantissa bits, ~0.4%
  relative error per rounding, compounded over 2 layers), and the argmax agrees on >= 90%
  of positions (flips only where the top two logits are nearly tied).
  """
  _, config, params = tiny
  bf16 = config.replace(dtype="bfloat16")
  ref = np.asarray(_forward(params, jnp.asarray(TOKENS), config=config))
  got = _forward(params, jnp.asarray(TOKENS), config=bf16)
  assert got.dtype == jnp.float32  # logits are accumulated in f32 whatever the compute dtype
  got = np.asarray(got)
  assert np.all(np.isfinite(got))
  scale = float(np.max(np.abs(ref)))
  rel = _max_diff(got, ref) / scale
  agree = float(np.mean(got.argmax(-1) == ref.argmax(-1)))
  assert rel <= 0.05, f"bf16 max diff is {rel:.3f} of the logit scale {scale:.2f}"
  assert agree >= 0.9, f"bf16 argmax agrees with f32 on only {agree:.0%} of positions"
  # The bf16 KV-cache path agrees with the bf16 full forward about as well.
  inc = _incremental_logits(params, bf16, TOKENS[0].tolist(), 5)
  assert _max_diff(inc, got[0]) / scale <= 0.05


# ----------------------------------------------------------------------------- config errors

_BASE_HF = dict(model_type="llama", vocab_size=128, hidden_size=64, intermediate_size=96,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


@pytest.mark.parametrize("overrides, message", [
    (dict(model_type="gpt2"), r"model_type='gpt2'"),
    (dict(model_type="gemma2"), r"model_type='gemma2'"),
    (dict(attention_bias=True), r"attention_bias"),
    (dict(mlp_bias=True), r"mlp_bias"),
    (dict(hidden_act="gelu"), r"hidden_act='gelu'"),
    (dict(rope_scaling={"rope_type": "yarn", "factor": 4.0}), r"'yarn' is not supported"),
    (dict(rope_scaling={"type": "dynamic", "factor": 2.0}), r"'dynamic' is not supported"),
    # transformers >= 5 writes the scaling into rope_parameters (no rope_scaling key).
    (dict(rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}),
     r"'yarn' is not supported"),
], ids=["gpt2", "gemma2", "attention_bias", "mlp_bias", "gelu", "yarn", "dynamic",
        "yarn_rope_parameters"])
def test_from_hf_config_errors(overrides, message):
  with pytest.raises(ValueError, match=message):
    models.config_from_hf({**_BASE_HF, **overrides})


def test_from_hf_config_accepts_plain_llama():
  cfg = models.config_from_hf(
      {**_BASE_HF, "rope_parameters": {"rope_type": "default", "rope_theta": 5e5},
       "eos_token_id": [2, 7]})
  assert (cfg.rope_theta, cfg.rope_scaling_type, cfg.head_dim, cfg.eos_token_id) == (
      5e5, None, 16, 2)


# ----------------------------------------------------------------------------- embedded model

CHAT_PROMPTS = [
    "What is the capital of France?",
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Count: 1, 22, 333"}],
    "def f(x):\n    return  12 * x  # ½ café 🙂",
    "Translate to German: The weather is nice today. Ça va? 日本語",
]
RAW_PROMPT = "The quick brown fox jumps over the lazy dog.  1999 was\n\n  42 years ago"


# The tests of this fixture run on one xdist worker (one load of the model, one reference).
_EMBEDDED_GROUP = pytest.mark.xdist_group("embedded_model_reference")


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
  """The embedded model, its HF export, the torch reference and all prompts' logits."""
  model = loading.load_model(mesh_shape=None)
  path = tmp_path_factory.mktemp("smollm2") / "hf"
  loading.export_hf(model, str(path))
  ref = transformers.LlamaForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
  ids = [model.tokenizer.encode_chat(p) for p in CHAT_PROMPTS]
  ids.append(model.tokenizer.encode(RAW_PROMPT))
  # One compiled forward for all prompts: right padding cannot change a causal forward's
  # logits at the real positions.
  T = max(map(len, ids))
  batch = np.array([x + [model.tokenizer.pad_id] * (T - len(x)) for x in ids], np.int32)
  ours = np.asarray(_forward(model.params, jnp.asarray(batch), config=model.config))
  ours = [ours[i, :len(x)] for i, x in enumerate(ids)]
  theirs = [_torch_logits(ref, [x])[0] for x in ids]
  return dict(model=model, path=str(path), ids=ids, ours=ours, theirs=theirs)


@requires_embedded
@pytest.mark.slow
@_EMBEDDED_GROUP
def test_embedded_logits_match_transformers(embedded):
  diffs = []
  for x, ours, theirs in zip(embedded["ids"], embedded["ours"], embedded["theirs"]):
    assert ours.shape == theirs.shape == (len(x), embedded["model"].config.vocab_size)
    diffs.append(_max_diff(ours, theirs))
    # Sanity: a real model, not two matching sets of zeros.
    assert np.abs(theirs).max() > 5.0
    np.testing.assert_array_equal(ours.argmax(-1), theirs.argmax(-1))
  print(f"\nembedded max |ai_jax - torch| per prompt: {[f'{d:.3e}' for d in diffs]}")
  assert max(diffs) <= EMBEDDED_TOL, diffs


@requires_embedded
@pytest.mark.slow
@_EMBEDDED_GROUP
def test_embedded_exported_tokenizer_matches(embedded):
  ours = embedded["model"].tokenizer
  theirs = transformers.AutoTokenizer.from_pretrained(embedded["path"])
  for prompt, ids in zip(CHAT_PROMPTS, embedded["ids"]):
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    text = theirs.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == ours.apply_chat_template(prompt)
    assert theirs(text, add_special_tokens=False)["input_ids"] == ids
    assert theirs.apply_chat_template(messages, add_generation_prompt=True)["input_ids"] == ids
  assert theirs(RAW_PROMPT)["input_ids"] == embedded["ids"][-1] == ours.encode(RAW_PROMPT)
  assert theirs.decode(embedded["ids"][-1]) == RAW_PROMPT
  assert (theirs.eos_token_id, theirs.bos_token_id) == (ours.eos_id, ours.bos_id)


@requires_embedded
@pytest.mark.slow
@_EMBEDDED_GROUP
def test_embedded_kv_cache_matches_full_forward(embedded):
  model = embedded["model"]
  tokens, full = embedded["ids"][0], embedded["ours"][0]
  inc = _incremental_logits(model.params, model.config, tokens, len(tokens) - 3)
  diff = _max_diff(inc, full)
  print(f"\nembedded incremental vs full max diff: {diff:.3e}")
  assert diff <= EMBEDDED_TOL
