"""Sampling benchmark: ai_jax vs transformers+torch, side by side in one process.

Both sides get the same weights (ai_jax exports its params as an HF checkpoint that
transformers' `AutoModelForCausalLM` loads: LlamaForCausalLM, Gemma3ForCausalLM, ...) and the same prompt token ids (chat-templated by ai_jax's
tokenizer). Every sample is forced to run the full --new-tokens (no stop tokens on
either side), so both sides generate exactly the same number of tokens.

  throughput: P prompts x k samples, T=1.0 (no top-k; top-p with --top-p), generated tokens/s
  latency:    batch 1, greedy, one prompt: ms per generated token (prefill included)
  agreement:  greedy batch-1 token ids of both sides, compared position by position

  python -m benchmarks.sampling                         # SmolLM2-135M-Instruct, f32
  python -m benchmarks.sampling --k 2 --prompts 2 --new-tokens 8     # quick check
  python -m benchmarks.sampling --model gemma3          # the embedded Gemma 3 270M
  python -m benchmarks.sampling --model PATH            # a .gguf file or an HF directory
  python -m benchmarks.sampling --random-config 1b      # random Llama-3.2-1B-like (GPU)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import machine

from ai_jax.loading import (GEMMA3_270M, LoadedModel, default_model_path, export_hf,
                            load_model)
from ai_jax import models
from ai_jax.sampling.sampler import SamplingOptions, sample_records
from ai_jax.sampling.strategies import Greedy, Temperature, TopP
from ai_jax.tokenizer import Tokenizer

PROMPTS = [
    "Write a haiku about autumn leaves.",
    "Explain what a hash table is to a beginner programmer.",
    "Give me three tips for sleeping better.",
    "What is the capital of Australia, and why is it not Sydney?",
    "Write a Python function that reverses a linked list.",
    "Summarise the plot of Romeo and Juliet in two sentences.",
    "Translate 'Where is the train station?' into French and Spanish.",
    "List five fruits that are rich in vitamin C.",
    "Why is the sky blue? Answer briefly.",
    "Draft a polite email declining a meeting invitation.",
    "What are the main differences between TCP and UDP?",
    "Tell me a short story about a robot learning to paint.",
    "How do I make a simple tomato pasta sauce?",
    "Solve: if 3x + 5 = 20, what is x? Show your steps.",
    "Suggest a name for a coffee shop run by cats.",
    "What should I pack for a weekend hiking trip?",
]

# Llama-3.2-1B shapes (1.24B parameters with tied embeddings); random weights.
LLAMA_1B = dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_layers=16,
                num_heads=32, num_kv_heads=8, head_dim=64, rms_norm_eps=1e-5,
                rope_theta=500000.0, rope_scaling_type="llama3", rope_scaling_factor=32.0,
                rope_low_freq_factor=1.0, rope_high_freq_factor=4.0,
                rope_original_max_position=8192, max_position_embeddings=131072,
                tie_word_embeddings=True)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--k", type=int, default=10, help="samples per prompt (throughput)")
  p.add_argument("--prompts", type=int, default=16, help=f"number of prompts (<= {len(PROMPTS)})")
  p.add_argument("--new-tokens", type=int, default=64)
  p.add_argument("--top-p", type=float, default=1.0,
                 help="nucleus for the throughput run on both sides (1.0 = off)")
  p.add_argument("--repeats", type=int, default=1, help="timed runs after the warm-up")
  p.add_argument("--skip-torch", action="store_true")
  p.add_argument("--model", default="",
                 help="'' = the embedded SmolLM2-135M-Instruct, 'gemma3' = the embedded "
                      "Gemma 3 270M, or a .gguf file / HF checkpoint directory")
  p.add_argument("--random-config", choices=["none", "1b"], default="none")
  p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
  p.add_argument("--json", metavar="PATH", help="also write the results here")
  args = p.parse_args(argv)
  if not 1 <= args.prompts <= len(PROMPTS):
    p.error(f"--prompts must be in 1..{len(PROMPTS)}")
  if not 0 < args.top_p <= 1:
    p.error(f"--top-p must be in (0, 1], got {args.top_p}")
  return args


def machine_info() -> dict:
  cpu = machine.cpu_model()
  info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
          "jax_devices": [str(d) for d in jax.devices()]}
  import flax
  info["versions"] = {"jax": jax.__version__, "flax": flax.__version__}
  return info


def build_model(args, ckpt_dir: str) -> LoadedModel:
  """The ai_jax model, plus the same weights written to `ckpt_dir` as an HF checkpoint."""
  param_dtype = jnp.bfloat16 if args.dtype == "bfloat16" else np.float32
  if args.random_config == "none":
    path = {"gemma3": GEMMA3_270M, "smollm2": ""}.get(args.model, args.model)
    model = load_model(path or None, dtype=args.dtype, mesh_shape=None,
                       param_dtype=param_dtype)
    export_hf(model, ckpt_dir, overwrite=True)
    return model
  from ai_jax.weights.convert import params_to_hf
  from ai_jax.weights.safetensors_io import write_hf_checkpoint
  config = models.ModelConfig(dtype=args.dtype, **LLAMA_1B)
  params = jax.tree.map(lambda x: x.astype(param_dtype), models.init_params(config, seed=0))
  write_hf_checkpoint(ckpt_dir, models.to_hf_config(config), params_to_hf(jax.device_get(params),
                      config), overwrite=True)
  # SmolLM2's tokenizer (49152 ids) for chat templating; the 128256-row vocab covers it.
  tokenizer = Tokenizer.from_gguf(default_model_path())
  return LoadedModel(config=config, params=jax.device_put(params), tokenizer=tokenizer,
                     mesh=None, source="random Llama-3.2-1B-like config")


def without_stops(model: LoadedModel) -> LoadedModel:
  """The same model with a tokenizer whose stop set is empty: every row runs to the end."""
  tok = copy.copy(model.tokenizer)
  tok.stop_ids = frozenset()
  return dataclasses.replace(model, tokenizer=tok)


class TorchSide:
  def __init__(self, ckpt_dir: str, dtype: str, pad_id: int):
    import torch
    import transformers
    self.torch = torch
    self.device = "cuda" if torch.cuda.is_available() else "cpu"
    self.model = transformers.AutoModelForCausalLM.from_pretrained(
        ckpt_dir, dtype=getattr(torch, dtype)).to(self.device).eval()
    gc = self.model.generation_config
    gc.eos_token_id = None           # no stop token: every sample runs max_new_tokens
    gc.pad_token_id = pad_id
    self.pad_id = pad_id
    self.versions = {"torch": torch.__version__, "transformers": transformers.__version__}

  def generate(self, ids_list, new_tokens: int, **kw) -> np.ndarray:
    """Left-padded batch generate; returns the new tokens [rows, new_tokens] (on host)."""
    torch = self.torch
    T = max(len(ids) for ids in ids_list)
    ids = torch.full((len(ids_list), T), self.pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids_list), T), dtype=torch.long)
    for i, row in enumerate(ids_list):
      ids[i, T - len(row):] = torch.tensor(row)
      mask[i, T - len(row):] = 1
    with torch.no_grad():
      out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                max_new_tokens=new_tokens,
                                eos_token_id=None, pad_token_id=self.pad_id, **kw)
    new = out[:, T:].cpu().numpy()
    assert new.shape[1] == new_tokens, f"torch generated {new.shape[1]} != {new_tokens} tokens"
    return new


def timed(fn, repeats: int) -> tuple[float, list[float]]:
  """Runs fn once (warm-up), then `repeats` times; returns (warm-up s, [timed s])."""
  t0 = time.perf_counter()
  fn(-1)
  warm = time.perf_counter() - t0
  times = []
  for r in range(repeats):
    t0 = time.perf_counter()
    fn(r)
    times.append(time.perf_counter() - t0)
  return warm, times


def main(argv=None):
  args = parse_args(argv)
  P, K, N, R = args.prompts, args.k, args.new_tokens, args.repeats
  compile_s = []  # jax tracing + lowering + backend compile, from jax.monitoring events
  jax.monitoring.register_event_duration_secs_listener(
      lambda name, secs, **_: compile_s.append(secs) if name.startswith("/jax/core/compile/")
      else None)
  res = {"args": vars(args), "machine": machine_info()}

  with tempfile.TemporaryDirectory(prefix="ai_jax_bench_") as ckpt:
    t0 = time.perf_counter()
    model = without_stops(build_model(args, ckpt))
    res["load_s"] = {"ai_jax": time.perf_counter() - t0}
    torch_side = None
    if not args.skip_torch:
      t0 = time.perf_counter()
      torch_side = TorchSide(ckpt, args.dtype, int(model.tokenizer.pad_id))
      res["load_s"]["torch"] = time.perf_counter() - t0
      res["machine"]["versions"].update(torch_side.versions)
      res["machine"]["torch_threads"] = torch_side.torch.get_num_threads()
      res["machine"]["torch_device"] = torch_side.device
  res["model"] = model.source
  texts = PROMPTS[:P]
  ids_list = [model.tokenizer.encode_chat(t) for t in texts]  # same ids on both sides
  res["prompt_tokens"] = [len(x) for x in ids_list]

  # ---- throughput: P prompts x K samples, T=1.0, all prompts in one ai_jax batch.
  opts = SamplingOptions(num_samples=K, batch_size=P, max_new_tokens=N,
                         strategy=TopP(args.top_p) if args.top_p < 1 else Temperature(1.0))
  counts = []

  def jax_sample(r):
    recs = sample_records(model, texts, dataclasses.replace(opts, seed=max(r, 0)))
    assert all(x["finish_reason"] == "length" for x in recs)
    counts.append(sum(x["num_tokens"] for x in recs))

  n_before = len(compile_s)
  warm, times = timed(jax_sample, R)
  total = P * K * N
  assert all(c == total for c in counts), counts
  tput = {"ai_jax": {"warmup_s": warm, "times_s": times, "tokens_per_s": total / np.mean(times),
                     "compile_s": sum(compile_s[n_before:])}}
  if torch_side is not None:
    def torch_sample(r):
      torch_side.torch.manual_seed(max(r, 0))
      gen_kw = dict(do_sample=True, temperature=1.0, top_k=0, top_p=args.top_p)
      if r < 0:  # short warm-up
        torch_side.generate(ids_list[:2], 4, num_return_sequences=2, **gen_kw)
      else:
        new = torch_side.generate(ids_list, N, num_return_sequences=K, **gen_kw)
        assert new.size == total
    warm, times = timed(torch_sample, R)
    tput["torch"] = {"warmup_s": warm, "times_s": times, "tokens_per_s": total / np.mean(times)}
  res["throughput"] = tput

  # ---- latency: batch 1, greedy, first prompt.
  gopts = SamplingOptions(num_samples=1, batch_size=1, max_new_tokens=N, strategy=Greedy(),
                          return_token_ids=True)
  greedy = {}

  def jax_greedy(r):
    greedy["ai_jax"] = sample_records(model, texts[:1], gopts)[0]["token_ids"]

  n_before = len(compile_s)
  warm, times = timed(jax_greedy, R)
  lat = {"ai_jax": {"warmup_s": warm, "times_s": times, "ms_per_token": 1e3 * np.mean(times) / N,
                    "compile_s": sum(compile_s[n_before:])}}
  if torch_side is not None:
    def torch_greedy(r):
      new = torch_side.generate(ids_list[:1], 4 if r < 0 else N, do_sample=False)
      if r >= 0:
        greedy["torch"] = [int(t) for t in new[0]]
    warm, times = timed(torch_greedy, R)
    lat["torch"] = {"warmup_s": warm, "times_s": times, "ms_per_token": 1e3 * np.mean(times) / N}
    a, b = greedy["ai_jax"], greedy["torch"]
    prefix = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    res["greedy_agreement"] = {"common_prefix": prefix, "same_positions": sum(
        x == y for x, y in zip(a, b)), "of": N, "ai_jax_text": model.tokenizer.decode(a),
        "torch_text": model.tokenizer.decode(b)}
  res["latency"] = lat
  if torch_side is not None:
    res["ai_jax_speedup"] = {
        "throughput": tput["ai_jax"]["tokens_per_s"] / tput["torch"]["tokens_per_s"],
        "latency": lat["torch"]["ms_per_token"] / lat["ai_jax"]["ms_per_token"]}
  report(res, P, K, N)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(res, f, indent=2, default=float)
    print(f"wrote {args.json}")
  return res


def report(res, P, K, N):
  m = res["machine"]
  print(f"\nmachine: {m['cpu']}, {m['cores']} cores; jax devices {m['jax_devices']}; "
        f"torch device {m.get('torch_device', '-')}, threads {m.get('torch_threads', '-')}")
  print("versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + f", python {m['python']}")
  print(f"model: {res['model']} ({res['args']['dtype']}); prompt tokens "
        f"{min(res['prompt_tokens'])}..{max(res['prompt_tokens'])}; load "
        + ", ".join(f"{k} {v:.1f}s" for k, v in res["load_s"].items()))
  tp, lt = res["throughput"], res["latency"]
  print(f"\n{'':44}{'ai_jax':>12}{'torch':>12}{'ai_jax speedup':>16}")

  def row(label, key, d, fmt, speedup=None):
    a = d["ai_jax"][key]
    b = d["torch"][key] if "torch" in d else None
    cells = [f"{a:>12{fmt}}", f"{b:>12{fmt}}" if b is not None else f"{'-':>12}"]
    if speedup and b is not None:
      cells.append(f"{(a / b if speedup == 'higher' else b / a):>15.2f}x")
    print(f"{label:44}" + "".join(cells))

  top_p = res["args"].get("top_p", 1.0)
  nucleus = f", top-p {top_p:g}" if top_p < 1 else ""
  row(f"throughput tok/s ({P}x{K}x{N}, T=1{nucleus})", "tokens_per_s", tp, ".1f",
      "higher")
  row("  warm-up call s", "warmup_s", tp, ".2f")
  row(f"latency ms/token (B=1 greedy, {N})", "ms_per_token", lt, ".2f", "lower")
  row("  warm-up call s", "warmup_s", lt, ".2f")
  print("(speedup > 1: ai_jax faster; throughput ai_jax/torch tok/s, latency torch/ai_jax ms)")
  print(f"ai_jax compile: sampling {tp['ai_jax']['compile_s']:.2f}s, "
        f"greedy B=1 {lt['ai_jax']['compile_s']:.2f}s (trace + lower + XLA compile)")
  if "greedy_agreement" in res:
    g = res["greedy_agreement"]
    print(f"greedy agreement: first {g['common_prefix']}/{g['of']} tokens identical "
          f"({g['same_positions']} positions equal)")
    print(f"  ai_jax: {g['ai_jax_text'][:100]!r}\n  torch:  {g['torch_text'][:100]!r}")


if __name__ == "__main__":
  main()
