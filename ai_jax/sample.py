r"""Sample k completions per prompt and write them as JSONL shards.

  python -m ai_jax.sample --config configs/sample.py:smoke --workdir /tmp/run

Writes DIR/samples/shard-NNNNN.jsonl (each shard appears whole, via rename), and
DIR/samples/summary.json (counts, finish reasons, the share of samples cut by
max_new_tokens, throughput).
"""

from __future__ import annotations

import collections
import os
import time

from ai_jax.store.atomic import write_json_atomic, write_jsonl_atomic


class ShardWriter:
  """Buffers records and writes full shards atomically (temp file + rename)."""

  def __init__(self, folder: str, records_per_shard: int):
    self.folder, self.per_shard = folder, max(1, int(records_per_shard))
    self.buffer: list[dict] = []
    self.num_shards = 0

  def add(self, records):
    self.buffer.extend(records)
    while len(self.buffer) >= self.per_shard:
      self._write(self.buffer[:self.per_shard])
      self.buffer = self.buffer[self.per_shard:]

  def close(self):
    if self.buffer:
      self._write(self.buffer)
      self.buffer = []

  def _write(self, records):
    write_jsonl_atomic(os.path.join(self.folder, f"shard-{self.num_shards:05d}.jsonl"), records)
    self.num_shards += 1


def options_from_config(config):
  from ai_jax.sampling import sampler, strategies
  s = config.sampling
  strategy = strategies.from_config(temperature=s.temperature, top_k=s.top_k or None,
                                    top_p=s.top_p)
  return sampler.SamplingOptions(
      num_samples=s.k, max_new_tokens=s.max_new_tokens, strategy=strategy, seed=s.seed,
      batch_size=s.batch_size, min_prompt_bucket=s.min_prompt_bucket, too_long=s.too_long,
      chat_template=s.chat_template)


def run(config, workdir: str, overwrite: bool = False) -> dict:
  """Library entry for the CLI (and for experiments that reuse the stage)."""
  from tqdm import tqdm

  from ai_jax import loading
  from ai_jax.data import prompts as prompts_lib
  from ai_jax.sampling import sampler

  # Validate everything cheap before loading weights or compiling.
  options = options_from_config(config)
  prompts = prompts_lib.read_prompts_jsonl(config.prompts.path, config.prompts.limit or None)
  out_dir = os.path.join(workdir, "samples")
  old = sorted(f for f in os.listdir(out_dir) if f.startswith("shard-")) if os.path.isdir(
      out_dir) else []
  if old and not overwrite:
    raise FileExistsError(f"{out_dir} already holds {len(old)} sample shards; use a new "
                          "--workdir or pass --overwrite (nothing was changed).")
  for name in old:
    os.remove(os.path.join(out_dir, name))
  os.makedirs(out_dir, exist_ok=True)
  write_json_atomic(os.path.join(workdir, "sample_config.json"), config.to_dict())

  t0 = time.time()
  model = loading.load_model(config.model.path or None, dtype=config.model.dtype,
                             mesh_shape=tuple(config.mesh_shape))
  load_s = time.time() - t0
  writer = ShardWriter(out_dir, config.output.records_per_shard)
  reasons, new_tokens, truncated = collections.Counter(), 0, 0
  t1 = time.time()
  with tqdm(total=len(prompts), unit="prompt", desc="sampling", dynamic_ncols=True) as bar:
    for done, records in sampler.iter_sample_batches(model, prompts, options):
      writer.add(records)
      for r in records:
        reasons[r["finish_reason"]] += 1
        new_tokens += r["num_tokens"]
        truncated += r["sample_index"] == 0 and bool(r.get("prompt_truncated_tokens"))
      bar.update(done)
      bar.set_postfix(tok_s=f"{new_tokens / max(time.time() - t1, 1e-9):.0f}")
  writer.close()
  sample_s = time.time() - t1
  num_records = sum(reasons.values())
  summary = {
      "model": model.source, "num_prompts": len(prompts), "k": options.num_samples,
      "num_records": num_records, "finish_reasons": dict(reasons),
      "cut_by_max_new_tokens_share": reasons["length"] / max(num_records, 1),
      "prompts_truncated": int(truncated),
      "prompts_skipped_too_long": reasons["prompt_too_long"] // options.num_samples,
      "new_tokens": new_tokens, "load_seconds": round(load_s, 2),
      "sample_seconds": round(sample_s, 2),
      "tokens_per_second": round(new_tokens / max(sample_s, 1e-9), 2),
      "num_shards": writer.num_shards,
  }
  write_json_atomic(os.path.join(out_dir, "summary.json"), summary)
  return summary


if __name__ == "__main__":
  from ai_jax import cli
  cli.run_stage(run, "--config configs/sample.py:smoke --workdir /tmp/run", 
                help_config="Sampling config file.")
