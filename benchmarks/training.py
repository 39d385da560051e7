"""Training benchmark: one full fine-tuning step, ai_jax vs transformers+torch.

Both sides train the same weights (ai_jax exports its params as an HF checkpoint; each side
loads that checkpoint) on the same batch (B rows of T tokens, seeded random ids, no
padding) with the same optimizer: AdamW (lr, betas 0.9/0.999, eps 1e-8, weight decay 0.1
on the matrices only, norms and embeddings excluded on both sides) after global-norm
gradient clipping at 1.0. The loss is the mean cross-entropy over the loss positions:
every position (`--mask all`) or the second half of each row (`--mask half`, a
prompt/completion split); torch gets the same positions as labels (-100 elsewhere).

  ai_jax: the jitted, state-donating `train_step` (ai_jax.training.step.jit_train_step);
          f32 master weights, forward/backward in --dtype.
  torch:  LlamaForCausalLM (sdpa attention) in train mode; loss.backward(),
          clip_grad_norm_, AdamW.step(), zero_grad; torch.set_num_threads(all cores);
          with --dtype bfloat16, f32 weights under torch.autocast(bfloat16), which is the
          same split of master and compute dtypes.

Each side runs in its own subprocess (one after the other, never together), so that its
peak memory is its own. Memory is the child's resident set: its RSS just before the first
step (weights, imports; ai_jax's optimizer moments already exist then, torch creates its
own in the first step), its peak RSS during the steps (`ru_maxrss` after resetting the
kernel's peak mark with /proc/self/clear_refs, so loading's transient copies do not count;
marked * where the reset failed and the figure includes loading) and over the process's
lifetime. On a GPU the peak device memory is `memory_stats()["peak_bytes_in_use"]` (jax) and
`torch.cuda.max_memory_allocated()` (torch). Separate processes also keep the two
frameworks' thread pools and (on GPU) memory preallocation from meeting.

Timing: --warmup steps first (ai_jax compiles in the first one; its compile time is
reported separately), then --steps timed steps, each synchronised (block_until_ready /
.item() and cuda.synchronize()); tokens/s = B * T / mean step time. Both sides print the
loss of every step: they start from the same weights and batch, so in f32 the losses must
agree closely, a check that both really train the same model on the same data.
On a GPU: model FLOPs utilisation = 6 * params * tokens / step time / peak bf16 FLOP/s
(dense, from a table by device name, or --peak-tflops).

  python -m benchmarks.training                       # SmolLM2-135M, 8 x 256, f32, CPU
  python -m benchmarks.training --batch 2 --seq-len 64 --steps 2   # quick check
  python -m benchmarks.training --random-config 1b --dtype bfloat16 --batch 8 --seq-len 2048
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks import machine

# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, by a substring of the device name.
PEAK_BF16_FLOPS = [("H200", 989.4e12), ("H100 PCIe", 756e12), ("H100", 989.4e12),
                   ("A100", 312e12), ("L4", 121e12), ("A10G", 70e12)]
LR = 1e-5
WEIGHT_DECAY = 0.1
CLIP = 1.0


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--seq-len", type=int, default=256)
  p.add_argument("--mask", choices=["all", "half"], default="all",
                 help="loss on every position, or on the second half of each row")
  p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
  p.add_argument("--steps", type=int, default=5, help="timed steps")
  p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                 help="compute dtype (master weights stay f32 on both sides)")
  p.add_argument("--random-config", choices=["none", "1b"], default="none")
  p.add_argument("--sides", default="ai_jax,torch", help="comma list of ai_jax, torch")
  p.add_argument("--peak-tflops", type=float, default=None,
                 help="peak bf16 TFLOP/s for MFU (default: from the GPU's name)")
  p.add_argument("--profile", action="store_true",
                 help="ai_jax: also print XLA's cost analysis and a forward-only timing")
  p.add_argument("--json", metavar="PATH", help="also write the results here")
  p.add_argument("--_side", help=argparse.SUPPRESS)
  p.add_argument("--_workdir", help=argparse.SUPPRESS)
  return p.parse_args(argv)


# ------------------------------------------------------------------ shared by both sides

def _rss_now_bytes() -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) * 1024
  return 0


def _peak_rss_bytes() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _start_step_memory(out: dict) -> None:
  """Records RSS now and the peak so far (loading), then resets the kernel's peak-RSS
  mark (Linux clear_refs 5, which ru_maxrss follows), so that the peak read after the
  steps is the steps' own: a loader's transient copies do not count as training memory."""
  out["rss_before_steps"] = _rss_now_bytes()
  out["peak_rss_loading"] = _peak_rss_bytes()
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    out["peak_rss_reset"] = True
  except OSError:
    out["peak_rss_reset"] = False  # then the steps' peak includes loading


def _end_step_memory(out: dict) -> None:
  out["peak_rss_steps"] = _peak_rss_bytes()
  out["peak_rss"] = max(out["peak_rss_steps"], out["peak_rss_loading"])


def _decays(name: str, ndim: int) -> bool:
  """ai_jax's default decay mask in HF names: matrices, not norms or embeddings."""
  return ndim >= 2 and "norm" not in name and "embed" not in name and "lm_head" not in name


def _time_steps(step, warmup: int, steps: int) -> dict:
  losses, times = [], []
  for i in range(warmup + steps):
    t0 = time.perf_counter()
    losses.append(step())
    times.append(time.perf_counter() - t0)
  return {"losses": losses, "warmup_s": times[:warmup], "times_s": times[warmup:]}


# ----------------------------------------------------------------------------- ai_jax side

def run_ai_jax(args, workdir: str) -> dict:
  import jax
  import jax.numpy as jnp

  from ai_jax import models
  from ai_jax.training import step as step_lib
  from ai_jax.weights import convert
  from ai_jax.weights.safetensors_io import read_hf_checkpoint

  compile_s = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda name, secs, **_: compile_s.append(secs) if name.startswith("/jax/core/compile/")
      else None)
  hf_config, state_dict = read_hf_checkpoint(os.path.join(workdir, "hf"))
  config = models.config_from_hf(hf_config, dtype=args.dtype)
  params = jax.device_put(convert.hf_to_params(state_dict, config, dtype=np.float32))
  del state_dict
  batch = {k: jnp.asarray(v) for k, v in np.load(os.path.join(workdir, "batch.npz")).items()}
  optim = step_lib.OptimConfig(learning_rate=LR, decay="constant", weight_decay=WEIGHT_DECAY,
                               grad_clip_norm=CLIP)
  optimizer = step_lib.make_optimizer(optim, params)
  state = step_lib.init_state(params, {}, optimizer)
  del params  # the state holds them (and donates them to the first step)
  step_fn = step_lib.jit_train_step(config, optimizer, step_lib.identity_merge, 1, None)
  holder = {"state": state}
  del state
  mem = {}
  _start_step_memory(mem)

  def step():
    holder["state"], metrics = step_fn(holder["state"], batch)
    jax.block_until_ready(holder["state"])
    return float(metrics["loss"])

  out = _time_steps(step, args.warmup, args.steps)
  _end_step_memory(mem)
  out.update(mem)
  out["compile_s"] = sum(compile_s)
  dev = jax.local_devices()[0]
  out["device"] = f"{dev.platform}: {dev.device_kind}"
  if dev.platform != "cpu":
    out["peak_device_bytes"] = (dev.memory_stats() or {}).get("peak_bytes_in_use")
  out["params"] = int(sum(x.size for x in jax.tree.leaves(holder["state"].params)))
  import flax
  import optax
  out["versions"] = {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__}
  if args.profile:
    out["profile"] = profile_ai_jax(step_fn, holder["state"], batch, config, args)
  return out


def profile_ai_jax(step_fn, state, batch, config, args) -> dict:
  """XLA's own estimate of the step (flops, bytes) and where the time goes: forward only,
  forward + backward (value_and_grad), and the full step with the optimizer."""
  import jax

  from ai_jax.training import step as step_lib

  def cost(compiled):
    c = compiled.cost_analysis()
    c = c[0] if isinstance(c, (list, tuple)) else c
    return {k: float(c[k]) for k in ("flops", "bytes accessed", "transcendentals") if k in c}

  res = {"step_cost": cost(step_fn.lower(state, batch).compile())}

  def loss(params):
    s, n = step_lib.token_losses(params, batch, config)
    return s / n

  params = jax.tree.map(lambda x: x.astype(config.compute_dtype), state.params)
  fwd = jax.jit(loss)
  fwd_bwd = jax.jit(jax.value_and_grad(loss))
  res["forward_cost"] = cost(fwd.lower(params).compile())
  for name, fn in (("forward_s", fwd), ("forward_backward_s", fwd_bwd)):
    jax.block_until_ready(fn(params))
    times = []
    for _ in range(max(args.steps, 1)):
      t0 = time.perf_counter()
      jax.block_until_ready(fn(params))
      times.append(time.perf_counter() - t0)
    res[name] = float(np.mean(times))
  return res


# ------------------------------------------------------------------------------ torch side

def run_torch(args, workdir: str) -> dict:
  import torch
  import transformers

  torch.set_num_threads(os.cpu_count())
  device = "cuda" if torch.cuda.is_available() else "cpu"
  model = transformers.LlamaForCausalLM.from_pretrained(
      os.path.join(workdir, "hf"), dtype=torch.float32, attn_implementation="sdpa").to(device)
  model.train()
  b = np.load(os.path.join(workdir, "batch.npz"))
  tokens = torch.tensor(b["tokens_BT"], dtype=torch.long, device=device)
  mask = torch.tensor(b["input_mask_BT"], dtype=torch.long, device=device)
  labels = torch.where(torch.tensor(b["loss_mask_BT"], device=device), tokens,
                       torch.tensor(-100, device=device))
  decay = [p for n, p in model.named_parameters() if _decays(n, p.ndim)]
  no_decay = [p for n, p in model.named_parameters() if not _decays(n, p.ndim)]
  opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=LR, betas=(0.9, 0.999), eps=1e-8)
  autocast = (torch.autocast(device, dtype=torch.bfloat16) if args.dtype == "bfloat16"
              else None)
  mem = {}
  _start_step_memory(mem)
  if device == "cuda":
    torch.cuda.reset_peak_memory_stats()

  def step():
    if autocast is not None:
      with autocast:
        loss = model(input_ids=tokens, attention_mask=mask, labels=labels).loss
    else:
      loss = model(input_ids=tokens, attention_mask=mask, labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
    opt.step()
    opt.zero_grad(set_to_none=True)
    value = float(loss.item())
    if device == "cuda":
      torch.cuda.synchronize()
    return value

  out = _time_steps(step, args.warmup, args.steps)
  _end_step_memory(mem)
  out.update(mem)
  out["device"] = (f"cuda: {torch.cuda.get_device_name()}" if device == "cuda"
                   else f"cpu: {torch.get_num_threads()} threads")
  if device == "cuda":
    out["peak_device_bytes"] = torch.cuda.max_memory_allocated()
  out["params"] = int(sum(p.numel() for p in model.parameters()))
  out["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__}
  return out


# ---------------------------------------------------------------------------------- parent

def machine_info() -> dict:
  cpu = machine.cpu_model()
  mem = 0
  with open("/proc/meminfo") as f:
    mem = int(f.readline().split()[1]) * 1024
  return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem / 2**30,
          "python": platform.python_version(), "load_avg_at_start": os.getloadavg()}


def prepare(args, workdir: str) -> str:
  """Writes workdir/hf (the weights both sides load) and workdir/batch.npz; returns the
  model's description."""
  import jax

  from ai_jax.loading import export_hf, load_model
  from ai_jax import models

  if args.random_config == "none":
    model = load_model(mesh_shape=None)
    export_hf(model, os.path.join(workdir, "hf"), overwrite=True)
    config, source = model.config, "SmolLM2-135M-Instruct (embedded Q4_1 GGUF, dequantised)"
  else:
    from ai_jax.weights.convert import params_to_hf
    from ai_jax.weights.safetensors_io import write_hf_checkpoint
    from benchmarks.sampling import LLAMA_1B
    config = models.ModelConfig(**LLAMA_1B)
    params = jax.device_get(models.init_params(config, seed=0))
    write_hf_checkpoint(os.path.join(workdir, "hf"), models.to_hf_config(config),
                        params_to_hf(params, config), overwrite=True)
    source = "random Llama-3.2-1B-like config"
  B, T = args.batch, args.seq_len
  rng = np.random.default_rng(0)
  # Ids below 3 are specials in SmolLM2's vocab; any others make a valid batch.
  tokens = rng.integers(3, config.vocab_size, size=(B, T)).astype(np.int32)
  loss_mask = np.ones((B, T), bool)
  if args.mask == "half":
    loss_mask[:, :T // 2] = False
  np.savez(os.path.join(workdir, "batch.npz"), tokens_BT=tokens,
           input_mask_BT=np.ones((B, T), bool), loss_mask_BT=loss_mask)
  return source


def run_child(side: str, argv: list[str], workdir: str, env: dict) -> dict:
  out_path = os.path.join(workdir, f"{side}.json")
  cmd = [sys.executable, "-m", "benchmarks.training", *argv, "--_side", side,
         "--_workdir", workdir]
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env)
  if proc.returncode != 0:
    raise RuntimeError(f"{side} side failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
  with open(out_path) as f:
    return json.load(f)


def peak_flops(device: str, override_tflops: float | None) -> float | None:
  if override_tflops:
    return override_tflops * 1e12
  for key, flops in PEAK_BF16_FLOPS:
    if key.lower() in device.lower():
      return flops
  return None


def main(argv=None):
  argv = list(sys.argv[1:] if argv is None else argv)
  args = parse_args(argv)
  if args._side:  # child: one side, results to workdir/<side>.json
    fn = {"ai_jax": run_ai_jax, "torch": run_torch}[args._side]
    out = fn(args, args._workdir)
    with open(os.path.join(args._workdir, f"{args._side}.json"), "w") as f:
      json.dump(out, f, default=float)
    return out

  # The parent only writes the checkpoint and the batch: it runs jax on the CPU, so that on
  # a GPU machine it holds no device memory while the children train.
  child_env = dict(os.environ)
  os.environ["JAX_PLATFORMS"] = "cpu"
  sides = [s.strip() for s in args.sides.split(",") if s.strip()]
  res = {"args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
         "machine": machine_info(), "sides": {}}
  with tempfile.TemporaryDirectory(prefix="ai_jax_train_bench_") as workdir:
    res["model"] = prepare(args, workdir)
    for side in sides:
      res["sides"][side] = run_child(side, argv, workdir, child_env)
  tokens = args.batch * args.seq_len
  for side, r in res["sides"].items():
    r["step_s"] = float(np.mean(r["times_s"]))
    r["tokens_per_s"] = tokens / r["step_s"]
    r["model_flops"] = 6 * r["params"] * tokens
    peak = peak_flops(r["device"], args.peak_tflops)
    if not r["device"].startswith("cpu") and peak:
      r["mfu"] = 6 * r["params"] * tokens / r["step_s"] / peak
  if {"ai_jax", "torch"} <= set(res["sides"]):
    res["ai_jax_speedup"] = (res["sides"]["ai_jax"]["tokens_per_s"]
                             / res["sides"]["torch"]["tokens_per_s"])
  res["machine"]["load_avg_at_end"] = os.getloadavg()
  report(res)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(res, f, indent=2, default=float)
    print(f"wrote {args.json}")
  return res


def report(res):
  a, m, s = res["args"], res["machine"], res["sides"]
  versions = {}
  for r in s.values():
    versions.update(r["versions"])
  print(f"\nmachine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']:.0f} GiB; load average "
        f"{m['load_avg_at_start'][0]:.2f} at start, {m['load_avg_at_end'][0]:.2f} at end")
  print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f", python {m['python']}")
  print(f"model: {res['model']}; {next(iter(s.values()))['params'] / 1e6:.1f}M params; "
        f"batch {a['batch']} x {a['seq_len']} tokens, loss on {a['mask']} positions; "
        f"compute {a['dtype']}, f32 master weights; AdamW lr {LR}, wd {WEIGHT_DECAY} "
        f"(matrices), clip {CLIP}; {a['warmup']} warm-up + {a['steps']} timed steps")
  names = list(s)
  print(f"\n{'':34}" + "".join(f"{n:>16}" for n in names))

  def row(label, fn):
    print(f"{label:34}" + "".join(f"{fn(s[n]):>16}" for n in names))

  row("device", lambda r: r["device"].split(":")[0] if len(r["device"]) > 15 else r["device"])
  row("tokens/s", lambda r: f"{r['tokens_per_s']:.1f}")
  row("step time s (mean of timed)", lambda r: f"{r['step_s']:.3f}")
  row("  fastest timed step s", lambda r: f"{min(r['times_s']):.3f}")
  row("  compile s (in first warm-up)", lambda r: f"{r['compile_s']:.2f}" if "compile_s" in r
      else "-")
  row("model TFLOP/s (6 N tokens / t)", lambda r: f"{r['model_flops'] / r['step_s'] / 1e12:.3f}")
  row("peak RSS GiB, during the steps", lambda r: f"{r['peak_rss_steps'] / 2**30:.2f}"
      + ("" if r["peak_rss_reset"] else "*"))
  row("  RSS before the first step GiB", lambda r: f"{r['rss_before_steps'] / 2**30:.2f}")
  row("  peak RSS GiB, process lifetime", lambda r: f"{r['peak_rss'] / 2**30:.2f}")
  if any(r.get("peak_device_bytes") for r in s.values()):
    row("peak device memory GiB", lambda r: f"{(r.get('peak_device_bytes') or 0) / 2**30:.2f}")
  if any("mfu" in r for r in s.values()):
    row("MFU (6 N tokens / t / peak bf16)", lambda r: f"{100 * r['mfu']:.1f}%" if "mfu" in r
        else "-")
  row("loss, step 1", lambda r: f"{r['losses'][0]:.5f}")
  row(f"loss, step {a['warmup'] + a['steps']}", lambda r: f"{r['losses'][-1]:.5f}")
  for n in names:
    print(f"  {n}: warm-up steps " + ", ".join(f"{t:.2f}" for t in s[n]["warmup_s"])
          + " s; timed steps " + ", ".join(f"{t:.2f}" for t in s[n]["times_s"]) + " s"
          + (f"; device {s[n]['device']}" if len(s[n]["device"]) > 15 else ""))
  if "ai_jax_speedup" in res:
    print(f"\nai_jax / torch tokens/s: {res['ai_jax_speedup']:.2f}x")
  p = s.get("ai_jax", {}).get("profile")
  if p:
    sc, fc = p["step_cost"], p["forward_cost"]
    print(f"\nai_jax profile: forward {p['forward_s']:.3f} s, forward+backward "
          f"{p['forward_backward_s']:.3f} s, full step {s['ai_jax']['step_s']:.3f} s (so the "
          f"optimizer and clipping take about "
          f"{s['ai_jax']['step_s'] - p['forward_backward_s']:.3f} s). XLA cost analysis: step "
          f"{sc.get('flops', 0) / 1e12:.3f} TFLOP, {sc.get('bytes accessed', 0) / 2**30:.2f} "
          f"GiB accessed; forward {fc.get('flops', 0) / 1e12:.3f} TFLOP (XLA counts a while "
          f"loop's body once, so the scanned layers are under-counted "
          f"by their number; 6 N tokens = {s['ai_jax']['model_flops'] / 1e12:.3f} TFLOP)")


if __name__ == "__main__":
  main()
