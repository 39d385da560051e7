"""STEER decoding benchmark: ai_jax's batched decoder vs the authors' way, in one process.

The reference decodes as O'Neill et al.'s code does: one sequence at a time, no KV cache,
every step three full forwards of transformers+torch (the expert on the context, the base
on the context, the expert on the negative prompt, each followed by what was generated so
far). ai_jax runs the same three streams for all prompts at once in one jitted loop, each
stream with its own prefill and KV cache (`ai_jax.sampling.decode.generate_streams`).
Both sides: the same weights (ai_jax's export of the embedded SmolLM2-135M-Instruct; the
base is the expert with its final norm scaled, so the two differ), the same prompt and
negative-prompt token ids, greedy (top-k 1) STEER with gamma 0.2, eta 0.6, no stop token:
every row generates --new-tokens tokens, so tokens/s compare like with like.

  python -m benchmarks.steer                       # 16 prompts x 64 new tokens
  python -m benchmarks.steer --prompts 2 --new-tokens 8            # quick check
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import machine
from benchmarks.sampling import PROMPTS
from ai_jax.loading import export_hf, load_model
from ai_jax.sampling import decode, processors, strategies

GAMMA, ETA = 0.2, 0.6


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--prompts", type=int, default=16, help=f"number of prompts (<= {len(PROMPTS)})")
  p.add_argument("--new-tokens", type=int, default=64)
  p.add_argument("--negatives", type=int, default=3, help="examples in each negative prompt")
  p.add_argument("--json", metavar="PATH", help="also write the results here")
  args = p.parse_args(argv)
  if not 1 <= args.prompts <= len(PROMPTS):
    p.error(f"--prompts must be in 1..{len(PROMPTS)}")
  return args


def _left_pad(rows, pad):
  T = max(map(len, rows))
  return (jnp.asarray([[pad] * (T - len(r)) + r for r in rows], jnp.int32),
          jnp.asarray([[False] * (T - len(r)) + [True] * len(r) for r in rows]))


def main(argv=None):
  args = parse_args(argv)
  model = load_model(mesh_shape=None)
  tok = model.tokenizer
  expert = model.params
  base = {**expert, "final_norm": {"scale": expert["final_norm"]["scale"] * 1.5}}
  P, A = args.prompts, args.new_tokens
  contexts = [tok.encode_chat(p) for p in PROMPTS[:P]]
  # Prompt i's negative prompt: the next `negatives` instructions, one per line.
  negatives = [tok.encode("\n".join(PROMPTS[(i + 1 + j) % len(PROMPTS)]
                                    for j in range(args.negatives))) for i in range(P)]

  # ai_jax: three streams, all prompts in one batch.
  spec = decode.DecodeSpec(num_samples=1, max_new_tokens=A, stop_ids=(), pad_id=tok.pad_id)
  fn = jax.jit(functools.partial(
      decode.generate_streams, configs=(model.config, model.config), spec=spec,
      streams=(decode.Stream(0), decode.Stream(1), decode.Stream(0, per_row=True)),
      strategy=strategies.Greedy(), processor=processors.Steer(GAMMA, ETA)))
  ctx, ctx_mask = _left_pad(contexts, tok.pad_id)
  neg, neg_mask = _left_pad(negatives, tok.pad_id)
  call = lambda: fn((expert, base), (ctx, ctx, neg), (ctx_mask, ctx_mask, neg_mask),  # noqa
                    jnp.arange(P, dtype=jnp.uint32), 0)
  t0 = time.perf_counter()
  jax.block_until_ready(call())
  warm = time.perf_counter() - t0
  t0 = time.perf_counter()
  out = jax.block_until_ready(call())
  jax_s = time.perf_counter() - t0
  ours = np.asarray(out["tokens_RA"])
  print(f"ai_jax batched, KV caches: {P * A / jax_s:.1f} tok/s (warm-up call {warm:.1f} s); "
        "now the reference (batch 1, no cache), one line per prompt", flush=True)

  # The reference: transformers + torch, batch 1, the full context every step.
  import torch
  import transformers
  torch.set_num_threads(max(1, os.cpu_count() or 1))
  with tempfile.TemporaryDirectory() as tmp:
    export_hf(model, tmp + "/expert")
    export_hf(model.__class__(config=model.config, params=base, tokenizer=tok, mesh=None,
                              source="base"), tmp + "/base")
    load = lambda d: transformers.AutoModelForCausalLM.from_pretrained(  # noqa: E731
        d, dtype=torch.float32).eval()
    t_expert, t_base = load(tmp + "/expert"), load(tmp + "/base")

  def logp(m, ids):
    with torch.no_grad():
      return torch.log_softmax(m(torch.tensor([ids])).logits[0, -1].float(), -1)

  t0 = time.perf_counter()
  theirs = []
  for c, n in zip(contexts, negatives):
    gen = []
    for _ in range(A):
      s = ((1 + GAMMA) * logp(t_expert, c + gen) - GAMMA * logp(t_base, c + gen)
           - ETA * logp(t_expert, n + gen))
      gen.append(int(torch.argmax(s)))
    theirs.append(gen)
    print(f"  reference prompt {len(theirs)}/{P}: {time.perf_counter() - t0:.0f} s so far",
          flush=True)
  ref_s = time.perf_counter() - t0

  agree = float(np.mean([np.mean(np.asarray(t) == o) for t, o in zip(theirs, ours)]))
  res = {"machine": machine.cpu_model(), "cores": os.cpu_count(), "prompts": P,
         "new_tokens": A, "ai_jax_tok_s": P * A / jax_s, "reference_tok_s": P * A / ref_s,
         "speedup": ref_s / jax_s, "ai_jax_warm_up_s": warm, "token_agreement": agree}
  print(f"machine: {res['machine']}, {res['cores']} cores; {P} prompts x {A} new tokens, "
        f"greedy STEER (gamma {GAMMA}, eta {ETA}, {args.negatives} negatives per prompt)")
  print(f"ai_jax batched, KV caches:     {res['ai_jax_tok_s']:8.1f} tok/s "
        f"(warm-up call {warm:.1f} s)")
  print(f"reference, batch 1, no cache:  {res['reference_tok_s']:8.1f} tok/s")
  print(f"speedup: {res['speedup']:.1f}x; token agreement with the reference {agree:.1%}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(res, f, indent=2)
  return res


if __name__ == "__main__":
  main()
