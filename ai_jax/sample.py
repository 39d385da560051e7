r"""Sample k completions per prompt into a crash-safe, resumable record store.

  python -m ai_jax.sample --config configs/sample.py:smoke --workdir /tmp/run

Appends records to DIR/samples/shard-NNNNN.jsonl (ai_jax.store.records: whole lines,
fsynced per batch; a torn tail after a crash is dropped on reopen), each keyed by
(prompt_id, teacher, sample_index). Rerunning the same command resumes: prompts and
sample indices already stored are skipped. Raising sampling.k or adding prompts extends
the run (each sample's randomness is keyed by its prompt and index, so old samples stay
valid); changing anything that decides the outputs (model, sampling settings, seed) is
refused, see DIR/samples/fingerprint.<teacher>.json; another teacher (config.model.name,
by default the model's file name) samples into the same run beside it. DIR/samples/summary.json counts finish
reasons and the share of samples cut by max_new_tokens over the whole store.
"""

from __future__ import annotations

import collections
import os
import shutil
import time

from ai_jax.store import fingerprint as fingerprint_lib
from ai_jax.store.atomic import write_json_atomic
from ai_jax.store.records import RecordStore, iter_records


def options_from_config(config):
  from ai_jax.sampling import sampler, strategies
  s = config.sampling
  strategy = strategies.from_config(temperature=s.temperature, top_k=s.top_k or None,
                                    top_p=s.top_p)
  return sampler.SamplingOptions(
      num_samples=s.k, max_new_tokens=s.max_new_tokens, strategy=strategy, seed=s.seed,
      batch_size=s.batch_size, min_prompt_bucket=s.min_prompt_bucket, too_long=s.too_long,
      chat_template=s.chat_template)


def teacher_name(config, model_path: str) -> str:
  """config.model.name, else the model file or folder name (without .gguf)."""
  name = config.model.get("name", "") if hasattr(config.model, "get") else ""
  if name:
    return name
  base = os.path.basename(os.path.normpath(model_path))
  return base[:-5] if base.endswith(".gguf") else base


def output_fields(config, model_identity: dict) -> dict:
  """What decides the records' contents. k, the prompt list, batch size, prompt buckets and
  mesh are left out: they decide how much is sampled and how fast, not what a given
  (prompt, sample_index) gets."""
  s = config.sampling
  return {"model": model_identity, "dtype": config.model.dtype,
          "sampling": {"max_new_tokens": s.max_new_tokens, "temperature": s.temperature,
                       "top_k": s.top_k, "top_p": s.top_p, "seed": s.seed,
                       "too_long": s.too_long, "chat_template": s.chat_template}}


def load_prompts(config):
  """The configured prompt set (split and deduplicated when a split is asked for); with
  config.host.num_hosts > 1, only this host's share of it (data.splits.host_shard)."""
  from ai_jax.data import prompts as prompts_lib
  p = config.prompts
  prompts = prompts_lib.load_prompt_set(
      p.path, limit=p.limit or None, split=p.get("split", "") or None,
      held_out_fraction=p.get("held_out_fraction", 0.1), salt=p.get("split_salt", ""),
      field=p.get("field", "") or None)
  index, count = host_of(config)
  if count > 1:
    from ai_jax.data.splits import host_shard
    kept = prompts_lib.PromptSet(r for r in prompts if host_shard(r["prompt_id"], count) == index)
    kept.stats = {**getattr(prompts, "stats", {}), "host": [index, count]}
    return kept
  return prompts


def host_of(config) -> tuple[int, int]:
  """(this host's index, number of hosts) from config.host, (0, 1) when absent."""
  host = config.get("host", None)
  if not host:
    return 0, 1
  index, count = int(host.get("index", 0)), int(host.get("num_hosts", 1))
  if not 0 <= index < count:
    raise ValueError(f"config.host.index={index} must be in [0, num_hosts={count})")
  return index, count


def writer_name(config) -> str:
  """One writer per host: each host appends only to its own shard files."""
  index, count = host_of(config)
  return f"h{index:03d}" if count > 1 else ""


def run_prompts(workdir: str, path_override: str = "") -> dict[str, object]:
  """prompt_id -> prompt for a run's prompt set, read as the sampling stage read it
  (DIR/sample_config.json), every split included; path_override replaces its path."""
  import json

  from ai_jax.data import prompts as prompts_lib
  config_path = os.path.join(workdir, "sample_config.json")
  prompts_config = {}
  if os.path.exists(config_path):
    with open(config_path, encoding="utf-8") as f:
      prompts_config = json.load(f).get("prompts", {})
  path = path_override or prompts_config.get("path")
  if not path:
    raise FileNotFoundError(f"{config_path} is missing: name the prompts the samples came "
                            "from in config.prompts_path")
  field = prompts_config.get("field") or None if not path_override else None
  return {p["prompt_id"]: p["prompt"] for p in prompts_lib.load_prompt_set(path, field=field)}


def _missing(store: RecordStore, prompts, teacher: str, k: int) -> dict[int, list]:
  """first missing sample index -> prompts that need indices first .. k-1."""
  groups: dict[int, list] = collections.defaultdict(list)
  for p in prompts:
    done = [j for j in range(k) if (p["prompt_id"], teacher, j) in store]
    # Indices are drawn as a suffix first..k-1; one missing before a present one (not
    # made by this writer) is redrawn with the suffix and the stored duplicate skipped.
    first = next((j for j in range(k) if j not in done), k)
    if first < k:
      groups[first].append(p)
  return groups


def summarize(folder: str, teacher: str, prompt_ids: set, k: int) -> dict:
  reasons, new_tokens, truncated, records = collections.Counter(), 0, 0, 0
  for r in iter_records(folder):
    if r.get("teacher") != teacher or r["prompt_id"] not in prompt_ids or r["sample_index"] >= k:
      continue
    records += 1
    reasons[r["finish_reason"]] += 1
    new_tokens += r["num_tokens"]
    truncated += r["sample_index"] == 0 and bool(r.get("prompt_truncated_tokens"))
  return {"num_records": records, "finish_reasons": dict(reasons),
          "cut_by_max_new_tokens_share": reasons["length"] / max(records, 1),
          "prompts_truncated": int(truncated),
          "prompts_skipped_too_long": reasons["prompt_too_long"] // max(k, 1),
          "new_tokens": new_tokens}


def run(config, workdir: str, overwrite: bool = False) -> dict:
  """Library entry for the CLI (and for experiments that reuse the stage)."""
  import dataclasses

  from tqdm import tqdm

  from ai_jax import loading
  from ai_jax.sampling import sampler

  # Validate everything cheap before loading weights or compiling.
  options = options_from_config(config)
  prompts = load_prompts(config)
  model_path = loading.resolve_model_path(config.model.path or None)
  fields = output_fields(config, loading.model_identity(model_path))
  teacher = teacher_name(config, model_path)
  out_dir = os.path.join(workdir, "samples")
  if overwrite and os.path.isdir(out_dir):
    shutil.rmtree(out_dir)
  # One fingerprint per teacher: several teachers sample into one run (their samples are
  # pooled per prompt at selection), each refusing changes to its own settings.
  if not fingerprint_lib.check(out_dir, fields, name=teacher):
    if any(r.get("teacher") == teacher for r in iter_records(out_dir)):
      raise fingerprint_lib.FingerprintMismatch(
          f"{out_dir} holds records of teacher {teacher!r} without a fingerprint; use a new "
          "--workdir or --overwrite")
    fingerprint_lib.write(out_dir, fields, name=teacher)
  write_json_atomic(os.path.join(workdir, "sample_config.json"), config.to_dict())
  store = RecordStore(out_dir, config.output.records_per_shard, writer=writer_name(config))
  groups = _missing(store, prompts, teacher, options.num_samples)
  todo = sum(len(g) for g in groups.values())

  load_s = sample_s = 0.0
  written = new_tokens = 0
  if todo:
    t0 = time.time()
    model = loading.load_model(model_path, dtype=config.model.dtype,
                               mesh_shape=tuple(config.mesh_shape))
    load_s = time.time() - t0
    t1 = time.time()
    with tqdm(total=todo, unit="prompt", desc="sampling", dynamic_ncols=True) as bar:
      for first, group in sorted(groups.items()):
        opts = dataclasses.replace(options, num_samples=options.num_samples - first,
                                   first_sample_index=first)
        for done, records in sampler.iter_sample_batches(model, group, opts):
          for r in records:
            r["teacher"] = teacher
          written += store.append(records)
          new_tokens += sum(r["num_tokens"] for r in records)
          bar.update(done)
          bar.set_postfix(tok_s=f"{new_tokens / max(time.time() - t1, 1e-9):.0f}")
    sample_s = time.time() - t1
  summary = {
      "model": model_path, "teacher": teacher, "num_prompts": len(prompts),
      "prompt_set": dict(getattr(prompts, "stats", {})),
      "k": options.num_samples,
      **summarize(out_dir, teacher, {p["prompt_id"] for p in prompts}, options.num_samples),
      "records_written_now": written,
      "records_found_on_open": store.report.num_records,
      "torn_bytes_dropped_on_open": store.report.torn_bytes,
      "load_seconds": round(load_s, 2), "sample_seconds": round(sample_s, 2),
      "tokens_per_second_now": round(new_tokens / max(sample_s, 1e-9), 2) if written else None,
      "num_shards": len(store.shard_paths()),
  }
  write_json_atomic(os.path.join(out_dir, "summary.json"), summary)
  return summary


if __name__ == "__main__":
  from ai_jax import cli
  cli.run_stage(run, "--config configs/sample.py:smoke --workdir /tmp/run",
                help_config="Sampling config file.")
