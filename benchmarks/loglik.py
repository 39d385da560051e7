"""Log-likelihood scoring benchmark: ai_jax's batched scorer vs an lm-eval-harness-style
transformers+torch loop, side by side in one process, on the same items and weights.

Items come from the profile suites (the same subsets `configs/profile.py` draws), tokenised
once by ai_jax (loglik.encode_group), so both sides score identical token ids.

  ai_jax: profiling.loglik.score_groups (shared contexts or plain rows per bucket, jitted;
          timed on a second pass, after its shapes compiled; the compile pass is reported)
  torch:  lm-eval-harness's HFLM._loglikelihood_tokens recipe: every (context, option) pair
          a request, sorted longest first, batches of --torch-batch padded on the right,
          one forward each, log-softmax, the option's tokens gathered and summed

  python -m benchmarks.loglik                        # 40 items of each of 5 suites
  python -m benchmarks.loglik --items 8 --suites openbookqa,bbq     # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

from benchmarks import machine

from ai_jax.loading import export_hf, load_model
from ai_jax.profiling import loglik
from ai_jax.profiling import suites as suites_lib
from ai_jax.profiling.suites import base

DEFAULT_SUITES = "stereoset,crows_pairs,bbq,openbookqa,piqa"


def groups_for(model, names, items_per_suite, seed=0):
  out = []
  for name in names:
    loaded = base.load(suites_lib.get(name), limit=items_per_suite, seed=seed)
    out += [loglik.encode_group(model.tokenizer, i.context, i.options) for i in loaded.items]
  return out


def torch_scores(torch_model, groups, batch_size, pad_id):
  """Summed log-likelihood per (group, option), lm-eval style (no context sharing)."""
  import torch
  requests = [(g, j, list(g.context) + list(o), len(g.context))
              for g_i, g in enumerate(groups) for j, o in enumerate(g.options)]
  index = {id(r): n for n, r in enumerate(requests)}
  order = sorted(requests, key=lambda r: -len(r[2]))
  sums = [0.0] * len(requests)
  with torch.no_grad():
    for start in range(0, len(order), batch_size):
      batch = order[start:start + batch_size]
      width = max(len(r[2]) for r in batch) - 1
      inp = torch.full((len(batch), width), pad_id, dtype=torch.long)
      for b, r in enumerate(batch):
        ids = r[2][:-1]
        inp[b, :len(ids)] = torch.as_tensor(ids)
      logp = torch.log_softmax(torch_model(inp).logits.float(), dim=-1)
      for b, r in enumerate(batch):
        ids, n = r[2], r[3]
        cont = torch.as_tensor(ids[n:])
        rows = logp[b, n - 1:len(ids) - 1]
        sums[index[id(r)]] = float(rows.gather(1, cont[:, None]).sum())
  return sums


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--suites", default=DEFAULT_SUITES)
  parser.add_argument("--items", type=int, default=40, help="items per suite")
  parser.add_argument("--torch-batch", type=int, default=8,
                      help="lm-eval's --batch_size for the torch side")
  parser.add_argument("--json", default="", help="also write the figures to this file")
  args = parser.parse_args(argv)

  import torch
  import transformers
  torch.set_num_threads(os.cpu_count() or 1)
  model = load_model(mesh_shape=None)
  groups = groups_for(model, args.suites.split(","), args.items)
  num_pairs = sum(len(g.options) for g in groups)
  tokens = sum(len(g.context) + len(o) for g in groups for o in g.options)

  t0 = time.time()
  loglik.score_groups(model, groups)
  first_s = time.time() - t0
  t0 = time.time()
  ours = loglik.score_groups(model, groups)
  ours_s = time.time() - t0

  with tempfile.TemporaryDirectory() as tmp:
    export_hf(model, tmp)
    torch_model = transformers.AutoModelForCausalLM.from_pretrained(
        tmp, dtype=torch.float32).eval()
    torch_scores(torch_model, groups[:4], args.torch_batch, int(model.tokenizer.pad_id))
    t0 = time.time()
    ref = torch_scores(torch_model, groups, args.torch_batch, int(model.tokenizer.pad_id))
    torch_s = time.time() - t0
  flat = np.concatenate([s.sum_J for s in ours])
  diff = float(np.max(np.abs(flat - np.asarray(ref))))
  result = {
      "machine": f"{machine.cpu_model()}, {os.cpu_count()} cores",
      "suites": args.suites, "items": len(groups), "pairs": num_pairs,
      "pair_tokens": tokens,
      "ai_jax_seconds": round(ours_s, 2), "ai_jax_first_pass_seconds": round(first_s, 2),
      "torch_seconds": round(torch_s, 2),
      "ai_jax_pairs_per_s": round(num_pairs / ours_s, 2),
      "torch_pairs_per_s": round(num_pairs / torch_s, 2),
      "speedup": round(torch_s / ours_s, 2),
      "max_abs_diff_sum_loglik": diff,
  }
  print(json.dumps(result, indent=2))
  print(f"\nai_jax {num_pairs / ours_s:.1f} pairs/s vs torch {num_pairs / torch_s:.1f} "
        f"pairs/s: {torch_s / ours_s:.2f}x; max |diff| of summed log-likelihoods {diff:.2e}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  main()
