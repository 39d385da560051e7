"""Sampler behaviour on a tiny random Llama with a byte tokenizer (fast), meshes included."""

import dataclasses
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ai_jax.buckets import bucket_length
from ai_jax.loading import LoadedModel, place_params
from ai_jax.sampling import sampler, strategies
from ai_jax.sharding import mesh as mesh_lib

PROMPTS = [{"prompt_id": f"p{i}", "prompt": text} for i, text in enumerate(
    ["hello", "a much longer prompt than the others, to force padding", "x", "what is 2+2?",
     "tell me a story", "ok"])]


def _model(config, params, tokenizer, mesh_shape):
  mesh = None if mesh_shape is None else mesh_lib.make_mesh(
      mesh_shape, jax.devices()[:int(np.prod(mesh_shape))])
  return LoadedModel(config=config, params=place_params(params, config, mesh),
                     tokenizer=tokenizer, mesh=mesh, source="tiny")


@pytest.fixture(scope="module")
def peaked_params(tiny_params):
  # Random init gives near-uniform logits; scale the output head so greedy decoding has
  # clear winners and float reordering across shardings cannot flip an argmax.
  params = jax.tree.map(np.asarray, tiny_params)
  params["lm_head"] = params["lm_head"] * 40.0
  return params


def _texts(records):
  return [(r["prompt_id"], r["sample_index"], r["text"], r["finish_reason"]) for r in records]


def test_greedy_same_on_one_and_eight_devices(tiny_config, peaked_params, char_tokenizer):
  opts = sampler.SamplingOptions(num_samples=2, max_new_tokens=12, batch_size=4)
  ref = sampler.sample_records(_model(tiny_config, peaked_params, char_tokenizer, (1, 1)),
                               PROMPTS, opts)
  assert len(ref) == len(PROMPTS) * 2
  for shape in [(8, 1), (2, 4)]:
    model = _model(tiny_config, peaked_params, char_tokenizer, shape)
    got = sampler.sample_records(model, PROMPTS, opts)
    assert _texts(got) == _texts(ref), shape
  # Both greedy samples of a prompt are identical.
  for a, b in zip(ref[::2], ref[1::2]):
    assert a["text"] == b["text"]


def test_params_are_sharded_on_model_axis(tiny_config, peaked_params, char_tokenizer):
  model = _model(tiny_config, peaked_params, char_tokenizer, (2, 4))
  spec = model.params["layers"]["attn"]["q_proj"].sharding.spec
  assert tuple(spec) == (None, None, "model", None)
  assert tuple(model.params["layers"]["mlp"]["gate_proj"].sharding.spec) == (None, None,
                                                                            "model")


def test_top_k_1_equals_greedy(tiny_config, peaked_params, char_tokenizer):
  model = _model(tiny_config, peaked_params, char_tokenizer, (1, 1))
  greedy = sampler.sample_records(model, PROMPTS, sampler.SamplingOptions(
      num_samples=2, max_new_tokens=10))
  topk1 = sampler.sample_records(model, PROMPTS, sampler.SamplingOptions(
      num_samples=2, max_new_tokens=10, strategy=strategies.TopK(k=1, temperature=0.7)))
  assert _texts(topk1) == _texts(greedy)


def test_samples_differ_and_are_batch_independent(tiny_config, tiny_params, char_tokenizer):
  model = _model(tiny_config, tiny_params, char_tokenizer, (1, 1))
  base = dict(num_samples=4, max_new_tokens=10, strategy=strategies.Temperature(1.0), seed=3)
  a = sampler.sample_records(model, PROMPTS, sampler.SamplingOptions(batch_size=4, **base))
  b = sampler.sample_records(model, PROMPTS, sampler.SamplingOptions(batch_size=1, **base))
  assert _texts(a) == _texts(b)
  for i in range(len(PROMPTS)):
    texts = {r["text"] for r in a[4 * i:4 * i + 4]}
    assert len(texts) == 4, texts
  # A different seed changes the samples; sharding over 8 devices does not.
  c = sampler.sample_records(model, PROMPTS, sampler.SamplingOptions(
      batch_size=4, **{**base, "seed": 4}))
  assert _texts(c) != _texts(a)
  sharded = _model(tiny_config, tiny_params, char_tokenizer, (8, 1))
  d = sampler.sample_records(sharded, PROMPTS, sampler.SamplingOptions(batch_size=8, **base))
  assert _texts(d) == _texts(a)


def test_sample_does_not_depend_on_prompt_order(tiny_config, tiny_params, char_tokenizer):
  model = _model(tiny_config, tiny_params, char_tokenizer, (1, 1))
  opts = sampler.SamplingOptions(num_samples=2, max_new_tokens=8, batch_size=2,
                                 strategy=strategies.TopP(0.9))
  fwd = sampler.sample_records(model, PROMPTS, opts)
  rev = sampler.sample_records(model, PROMPTS[::-1], opts)
  key = lambda r: (r["prompt_id"], r["sample_index"])
  assert sorted(_texts(fwd)) == sorted(_texts(rev))
  assert {key(r) for r in fwd} == {key(r) for r in rev}


@dataclasses.dataclass(frozen=True)
class _StopAfter:
  """Emits token 70 ('C'), and the stop token at step `n` in even rows."""
  n: int
  stop_id: int

  def __call__(self, logits_RV, keys_R2, step):
    rows = jnp.arange(logits_RV.shape[0])
    stop = (rows % 2 == 0) & (step == self.n)
    return jnp.where(stop, self.stop_id, 70).astype(jnp.int32)


def test_stop_on_eos_and_finish_reason(tiny_config, tiny_params, char_tokenizer):
  model = _model(tiny_config, tiny_params, char_tokenizer, (1, 1))
  opts = sampler.SamplingOptions(num_samples=2, max_new_tokens=6, batch_size=3,
                                 strategy=_StopAfter(3, char_tokenizer.eos_id))
  records = sampler.sample_records(model, PROMPTS[:3], opts)
  for r in records:
    if r["sample_index"] == 0:  # even row: stopped after 3 tokens, stop token not in text
      assert (r["finish_reason"], r["num_tokens"], r["text"]) == ("stop", 3, "CCC")
    else:
      assert (r["finish_reason"], r["num_tokens"], r["text"]) == ("length", 6, "CCCCCC")


def test_too_long_policies(tiny_config, tiny_params, char_tokenizer):
  model = _model(tiny_config, tiny_params, char_tokenizer, (1, 1))
  long_prompt = {"prompt_id": "long", "prompt": "z" * 300}
  prompts = [PROMPTS[0], long_prompt]
  with pytest.raises(sampler.PromptTooLongError, match="'long'.*too_long"):
    sampler.sample_records(model, prompts, sampler.SamplingOptions(max_new_tokens=8))
  skipped = sampler.sample_records(model, prompts, sampler.SamplingOptions(
      max_new_tokens=8, too_long="skip", num_samples=2))
  assert [r["finish_reason"] for r in skipped if r["prompt_id"] == "long"] == [
      "prompt_too_long"] * 2
  assert len(skipped) == 4
  cut = sampler.sample_records(model, prompts, sampler.SamplingOptions(
      max_new_tokens=8, too_long="truncate"))
  long_rec = [r for r in cut if r["prompt_id"] == "long"][0]
  assert long_rec["prompt_tokens"] == 256 - 8
  assert long_rec["prompt_truncated_tokens"] == len(char_tokenizer.encode_chat("z" * 300)) - 248


def test_bad_options_and_prompts(tiny_config, tiny_params, char_tokenizer):
  with pytest.raises(ValueError, match="num_samples"):
    sampler.SamplingOptions(num_samples=0)
  with pytest.raises(ValueError, match="too_long"):
    sampler.SamplingOptions(too_long="maybe")
  model = _model(tiny_config, tiny_params, char_tokenizer, (1, 1))
  with pytest.raises(ValueError, match="duplicate prompt_id"):
    sampler.sample_records(model, [PROMPTS[0], PROMPTS[0]], sampler.SamplingOptions())


def test_bucketing_limits_compiles(tiny_config, tiny_params, char_tokenizer):
  assert [bucket_length(n, 16) for n in (1, 16, 17, 33, 100)] == [16, 16, 32, 64, 128]
  model = _model(tiny_config, tiny_params, char_tokenizer, (1, 1))
  opts = sampler.SamplingOptions(num_samples=1, max_new_tokens=4, batch_size=2)
  prompts = [{"prompt_id": str(n), "prompt": "y" * n} for n in range(1, 40, 3)]
  from ai_jax.sampling import decode
  spec = decode.DecodeSpec(1, 4, tuple(sorted(char_tokenizer.stop_ids)), 0)
  fn = decode.compiled_generate(tiny_config, spec, opts.strategy, None)
  before = fn._cache_size()
  sampler.sample_records(model, prompts, opts)
  # 13 prompts of lengths 6..42 (with template) -> buckets 16, 32, 64 only.
  assert fn._cache_size() - before <= 3


def test_strategies_match_their_distributions():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
  keys = jax.vmap(lambda i: jax.random.PRNGKey(i))(jnp.arange(4000))
  rows = jnp.repeat(logits, 4000, axis=0)
  for strat, expected in [
      (strategies.Temperature(1.0), [0.5, 0.3, 0.15, 0.05]),
      (strategies.TopK(2), [0.5 / 0.8, 0.3 / 0.8, 0, 0]),
      # Nucleus 0.7: 0.5 alone < 0.7, so {0, 1} is kept.
      (strategies.TopP(0.7), [0.5 / 0.8, 0.3 / 0.8, 0, 0]),
      (strategies.TopP(0.85), [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0]),
  ]:
    toks = np.asarray(jax.jit(strat)(rows, keys, jnp.int32(0)))
    freq = np.bincount(toks, minlength=4) / len(toks)
    np.testing.assert_allclose(freq, expected, atol=0.03, err_msg=str(strat))


def test_top_p_flat_distribution_keeps_its_nucleus():
  # A flat distribution over 1000 tokens: the nucleus at 0.95 is every token (all tie at the
  # edge, and ties are kept), so every token stays reachable.
  logits = jnp.zeros((3000, 1000))
  keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(3000))
  toks = np.asarray(jax.jit(strategies.TopP(0.95))(logits, keys, jnp.int32(1)))
  assert toks.max() > 800 and toks.min() < 100
  assert len(np.unique(toks)) > 800


def test_top_p_threshold_equals_the_sorted_prefix_rule():
  # Random logits in a large vocabulary: the kept set must be the smallest sorted prefix
  # whose mass reaches p, extended to every token tied (in float32) with its last one.
  rng = np.random.default_rng(3)
  logits_RV = jnp.asarray(rng.standard_normal((64, 5000)).astype(np.float32) *
                          rng.uniform(0.5, 6, (64, 1)).astype(np.float32))
  log_norm_R = jax.nn.logsumexp(logits_RV, axis=-1)
  probs_RV = np.asarray(jnp.exp(logits_RV - log_norm_R[:, None])).astype(np.float64)
  for p in (0.3, 0.9, 0.99):
    kept = np.isfinite(np.asarray(
        strategies._nucleus_threshold_mask(logits_RV, p, log_norm_R)))
    for r in range(64):
      order = np.argsort(-probs_RV[r], kind="stable")
      sorted_probs = probs_RV[r][order]
      mass_before = np.cumsum(sorted_probs) - sorted_probs
      prefix = mass_before < p
      expected = sorted_probs >= sorted_probs[prefix].min()  # ties at the edge stay
      # Float32 sums may move a token whose mass-before is within 1e-5 of p.
      edge = np.abs(mass_before - p) < 1e-5
      assert np.array_equal(kept[r][order][~edge], expected[~edge]), (p, r)
      assert expected.sum() - prefix.sum() <= 2  # the tie extension is rare and small


def test_draws_never_land_on_masked_entries_anywhere_in_the_row():
  # Masked entries before, between and after the live ones (vocabulary order, not sorted).
  logits = jnp.array([[-jnp.inf, 0.0, -jnp.inf, 0.0, -jnp.inf, -jnp.inf]])
  rows = jnp.repeat(logits, 4000, axis=0)
  keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(4000))
  toks = np.asarray(jax.jit(strategies.Temperature(1.0))(rows, keys, jnp.int32(0)))
  freq = np.bincount(toks, minlength=6) / len(toks)
  assert freq[[0, 2, 4, 5]].sum() == 0
  np.testing.assert_allclose(freq[[1, 3]], [0.5, 0.5], atol=0.03)
  # u = 0 and u -> 1 both land on live entries.
  for u in (0.0, np.nextafter(np.float32(1), np.float32(0))):
    idx = np.asarray(strategies._draw_inverse_cdf(logits, jnp.array([u], jnp.float32)))
    assert idx[0] in (1, 3), (u, idx)


def test_from_config():
  assert strategies.from_config(temperature=0) == strategies.Greedy()
  assert strategies.from_config(temperature=0.7, top_k=5) == strategies.TopK(5, 0.7)
  assert strategies.from_config(top_p=0.9) == strategies.TopP(0.9, 1.0)
  assert strategies.from_config(top_p=1.0) == strategies.Temperature(1.0)


def test_first_sample_index_draws_the_same_samples_as_a_larger_k(tiny_config, tiny_params,
                                                               char_tokenizer):
  model = _model(tiny_config, tiny_params, char_tokenizer, (1, 1))
  prompts = [{"prompt_id": "p0", "prompt": "hello"}, {"prompt_id": "p1", "prompt": "abc"}]
  strategy = strategies.Temperature(1.0)
  full = sampler.sample_records(model, prompts, sampler.SamplingOptions(
      num_samples=4, max_new_tokens=6, strategy=strategy, seed=3))
  tail = sampler.sample_records(model, prompts, sampler.SamplingOptions(
      num_samples=2, max_new_tokens=6, strategy=strategy, seed=3, first_sample_index=2))
  assert [r for r in full if r["sample_index"] >= 2] == tail
  assert len({r["text"] for r in full}) > 2  # the samples do differ
