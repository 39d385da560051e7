r"""The sample stage: k completions per prompt into a crash-safe, resumable record store.

`python -m ai_jax.sample` is its command line; experiments call `run` directly.

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
import dataclasses
import os
import shutil
import time
from typing import Any

from ai_jax.run import hosts, layout
from ai_jax.store import fingerprint as fingerprint_lib
from ai_jax.store.atomic import read_json, write_json_atomic
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


def teacher_name(name: str, model_path: str) -> str:
  """config.model.name, else the model file or folder name (without .gguf)."""
  if name:
    return name
  base = os.path.basename(os.path.normpath(model_path))
  return base[:-5] if base.endswith(".gguf") else base


@dataclasses.dataclass(frozen=True)
class SampleSettings:
  """Every key of configs/sample.py as the stage uses it, read from the config once."""
  model_path: str                # resolved (the embedded default for "")
  teacher: str
  dtype: str
  mesh_shape: tuple[int, ...]
  prompts: dict[str, Any]        # path, limit, field, split, held_out_fraction, split_salt
  sampling: dict[str, Any]       # the config's sampling keys, as recorded in fingerprints
  options: Any                   # sampling.SamplingOptions built from them
  records_per_shard: int
  host: tuple[int, int]          # (index, num_hosts)
  steer: Any = None              # sampling.steer.SteerSettings with decoder "steer"


def settings(config) -> SampleSettings:
  """Validates the config cheaply (no weights) and resolves it."""
  from ai_jax import loading
  from ai_jax.sampling import steer
  model_path = loading.resolve_model_path(config.model.path or None)
  return SampleSettings(
      model_path=model_path, teacher=teacher_name(config.model.name, model_path),
      dtype=config.model.dtype, mesh_shape=tuple(config.mesh_shape),
      prompts=dict(config.prompts.to_dict()), sampling=dict(config.sampling.to_dict()),
      options=options_from_config(config),
      records_per_shard=int(config.output.records_per_shard), host=hosts.host_of(config),
      steer=steer.settings_from_config(config))


def output_fields(s: SampleSettings, model_identity: dict, decoder: dict | None = None
                  ) -> dict:
  """What decides the records' contents. k, the prompt list, batch size, prompt buckets and
  mesh are left out: they decide how much is sampled and how fast, not what a given
  (prompt, sample_index) gets. `decoder`: a guided decoder's settings (absent for the
  plain one, so plain runs keep their fingerprints)."""
  fields = {"model": model_identity, "dtype": s.dtype,
            "sampling": {k: s.sampling[k] for k in ("max_new_tokens", "temperature", "top_k",
                                                     "top_p", "seed", "too_long",
                                                     "chat_template")}}
  if decoder is not None:
    fields["decoder"] = decoder
  return fields


def load_prompts(s: SampleSettings):
  """The configured prompt set (split and deduplicated when a split is asked for); with
  several hosts, only this host's share of it (data.splits.host_shard)."""
  from ai_jax.data import prompts as prompts_lib
  p = s.prompts
  prompts = prompts_lib.load_prompt_set(
      p["path"], limit=p["limit"] or None, split=p["split"] or None,
      held_out_fraction=p["held_out_fraction"], salt=p["split_salt"],
      field=p["field"] or None)
  index, count = s.host
  if count > 1:
    kept = prompts_lib.PromptSet(r for r in prompts
                                 if hosts.owner(r["prompt_id"], count) == index)
    kept.stats = {**getattr(prompts, "stats", {}), "host": [index, count]}
    return kept
  return prompts


def run_prompts(workdir: str, path_override: str = "") -> dict[str, object]:
  """prompt_id -> prompt for a run's prompt set, read as the sampling stage read it
  (DIR/sample_config.json), every split included; path_override replaces its path."""
  from ai_jax.data import prompts as prompts_lib
  config_path = layout.StageDir(workdir).sample_config
  prompts_config = read_json(config_path, {}).get("prompts", {})
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


def _rounds(s: SampleSettings, store: RecordStore, prompts, teacher: str, real, model, base):
  """(prompts, guidance) per round: one round of all prompts for the plain decoder; for
  STEER, rounds of steer.round_prompts in input order, each with the pool of real examples
  and the samples stored for the rounds before it (read when the round starts)."""
  if s.steer is None:
    yield prompts, None
    return
  from ai_jax.sampling import steer
  done: list[dict] = []
  for round_prompts in steer.rounds(prompts, s.steer.round_prompts):
    if done:
      earlier = {p["prompt_id"]: i for i, p in enumerate(done)}
      found: dict = {}
      for r in iter_records(store.folder):
        if (r.get("teacher") == teacher and r["prompt_id"] in earlier
            and r["finish_reason"] != layout.FINISH_PROMPT_TOO_LONG):
          found.setdefault((earlier[r["prompt_id"]], r["sample_index"]), r["text"])
      synthetic = tuple((done[i]["prompt_id"], j, text)
                        for (i, j), text in sorted(found.items()))
    else:
      synthetic = ()
    pool = steer.NegativePool(real=tuple(real), synthetic=synthetic)
    yield round_prompts, steer.streams(s.steer, model, base, pool, s.options)
    done.extend(round_prompts)


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
          "cut_by_max_new_tokens_share": reasons[layout.FINISH_CUT] / max(records, 1),
          "prompts_truncated": int(truncated),
          "prompts_skipped_too_long": reasons[layout.FINISH_PROMPT_TOO_LONG] // max(k, 1),
          "new_tokens": new_tokens}


def run(config, workdir: str, overwrite: bool = False) -> dict:
  """Samples (or resumes) config's prompts into workdir; returns the summary."""
  from tqdm import tqdm

  from ai_jax import loading
  from ai_jax.sampling import sampler

  # Validate everything cheap before loading weights or compiling.
  s = settings(config)
  options, model_path, teacher = s.options, s.model_path, s.teacher
  prompts = load_prompts(s)
  real = decoder = None
  if s.steer is not None:
    from ai_jax.sampling import steer
    real = steer.load_real(s.steer)
    steer.check_tokenizers(model_path, s.steer.base_path)
    decoder = steer.fingerprint_fields(s.steer, real)
  fields = output_fields(s, loading.model_identity(model_path), decoder)
  run_dir = layout.StageDir(workdir)
  out_dir = run_dir.samples
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
  write_json_atomic(run_dir.sample_config, config.to_dict())
  store = RecordStore(out_dir, s.records_per_shard, writer=hosts.writer_name(*s.host))
  groups = _missing(store, prompts, teacher, options.num_samples)
  todo = sum(len(g) for g in groups.values())

  load_s = sample_s = 0.0
  written = new_tokens = 0
  if todo:
    t0 = time.time()
    model = loading.load_model(model_path, dtype=s.dtype, mesh_shape=s.mesh_shape)
    base = (None if s.steer is None else
            loading.load_model(s.steer.base_path, dtype=s.dtype, mesh=model.mesh))
    load_s = time.time() - t0
    t1 = time.time()
    with tqdm(total=todo, unit="prompt", desc="sampling", dynamic_ncols=True) as bar:
      for round_prompts, guidance in _rounds(s, store, prompts, teacher, real, model, base):
        for first, group in sorted(_missing(store, round_prompts, teacher,
                                            options.num_samples).items()):
          opts = dataclasses.replace(options, num_samples=options.num_samples - first,
                                     first_sample_index=first)
          for done, records in sampler.iter_sample_batches(model, group, opts, guidance):
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
  write_json_atomic(run_dir.samples_summary, summary)
  return summary
