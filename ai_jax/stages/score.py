r"""The score stage: every sample record of a run scored with the configured metrics.

`python -m ai_jax.score` is its command line; experiments call `run` directly.

Reads the records of DIR/samples/ and appends one score record per sample record to the
crash-safe store DIR/scores/ (shard-*.jsonl; ai_jax.store.records), with the same key
(prompt_id, teacher, sample_index), one column per metric (null where the metric has no
value) and score_errors {column: reason}. DIR/scores/metrics.json records each column's
metric, options, version and what a higher value means; DIR/scores/summary.json counts
rows, failures and undefined values over every score record.

Rerunning scores only the sample records not scored yet (so scoring can follow a
sampling run that is still growing, and a crash loses at most the batch in flight).
Other metrics, options or versions are refused (DIR/scores/fingerprint.json); pass
--overwrite or use a new workdir, so old and new definitions are never mixed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

from ai_jax.metrics import registry, runner
from ai_jax.run import hosts, layout
from ai_jax.run.layout import KEY_FIELDS as _KEY_FIELDS
from ai_jax.store import fingerprint as fingerprint_lib
from ai_jax.store.atomic import read_json, write_json_atomic
from ai_jax.store.records import RecordStore, has_records, iter_records, record_key


@dataclasses.dataclass(frozen=True)
class ScoreSettings:
  """Every key of configs/score.py as the stage uses it, read from the config once."""
  scorers: dict            # column -> registry.Scorer
  tokenizer: str           # "sampler", "model" or a path
  prompts_path: str        # "" = DIR/sample_config.json's prompts
  rows_per_append: int
  records_per_shard: int
  host: tuple[int, int]    # (index, num_hosts)

  def columns(self) -> dict:
    """column -> (metric, version, options): what decides the score records."""
    return {c: [s.name, s.version, s.info()["options"]] for c, s in self.scorers.items()}


def settings(config) -> ScoreSettings:
  """Validates the metric specs (unknown names, bad options) and resolves the config."""
  return ScoreSettings(
      scorers=registry.scorers_from_specs(list(config.metrics)), tokenizer=config.tokenizer,
      prompts_path=config.prompts_path, rows_per_append=max(1, int(config.rows_per_append)),
      records_per_shard=int(config.records_per_shard), host=hosts.host_of(config))


def _resolve_tokenizer(settings_: ScoreSettings, workdir):
  """(tokenizer, source) per config.tokenizer: 'sampler' = the model that sampled DIR."""
  from ai_jax import loading
  choice = settings_.tokenizer
  if choice == "sampler":
    sample_config = layout.StageDir(workdir).sample_config
    if not os.path.exists(sample_config):
      raise FileNotFoundError(f"config.tokenizer='sampler' reads {sample_config}, which is "
                              "missing; set config.tokenizer to 'model' or a tokenizer path")
    choice = read_json(sample_config).get("model", {}).get("path", "") or "model"
  return loading.load_tokenizer(None if choice == "model" else choice)


def _prompt_texts(settings_: ScoreSettings, workdir) -> dict[str, str]:
  from ai_jax.stages.sample import run_prompts
  return {i: _prompt_text(p) for i, p in run_prompts(workdir, settings_.prompts_path).items()}


def _prompt_text(prompt) -> str:
  """A scorer sees a chat prompt as its last user message, the instruction answered."""
  if isinstance(prompt, str):
    return prompt
  users = [m.get("content", "") for m in prompt if m.get("role") == "user"]
  return users[-1] if users else ""


def _check_sample_rows(folder: str, rows: list[dict]) -> None:
  for row in rows:
    missing = [k for k in ("prompt_id", "sample_index", "text") if k not in row]
    if missing or not isinstance(row["text"], str):
      what = f"lacks {missing}" if missing else "has a non-string text"
      key = {k: row.get(k) for k in _KEY_FIELDS if k in row}
      raise ValueError(f"{folder}: record {key} {what}; sample records come from "
                       "ai_jax.sample (prompt_id, teacher, sample_index, text)")


def score_rows(scorers, rows, context_extra, on_rows=None) -> tuple[list[dict], runner.ScoreTable]:
  """Scores sample rows; returns (score rows in the same order, table)."""
  prompts_by_id, tokenizer = context_extra
  skip = {i: f"not sampled: {r['finish_reason']}" for i, r in enumerate(rows)
          if r.get("finish_reason") in layout.NOT_SAMPLED}
  prompts = None
  if prompts_by_id is not None:
    unknown = sorted({r["prompt_id"] for r in rows} - set(prompts_by_id))
    if unknown:
      raise ValueError(f"prompt ids {unknown[:5]} are not in the prompts file; score with the "
                       "prompts the samples came from (config.prompts_path)")
    prompts = [prompts_by_id[r["prompt_id"]] for r in rows]
  table = runner.score_texts(
      scorers, [r["text"] for r in rows],
      registry.ScoreContext(prompts=prompts, tokenizer=tokenizer), skip=skip, on_rows=on_rows)
  out = []
  for i, row in enumerate(rows):
    rec = {k: row[k] for k in _KEY_FIELDS if k in row}
    for column, values in table.values.items():
      v = float(values[i])
      rec[column] = None if math.isnan(v) else v
    rec[layout.SCORE_ERRORS] = table.errors[i]
    out.append(rec)
  return out, table


def summarize_scores(score_records, columns) -> dict:
  """Counts and statistics over score records (resumed ones included)."""
  import numpy as np
  values = {c: [] for c in columns}
  counts = {c: {"rows": 0, "failed": 0, "undefined": 0} for c in columns}
  first_failures = []
  for rec in score_records:
    errors = rec.get(layout.SCORE_ERRORS, {})
    for c in columns:
      value = rec.get(c)
      values[c].append(math.nan if value is None else value)
      counts[c]["rows"] += 1
      if c in errors:
        counts[c]["undefined" if runner.is_undefined(errors[c]) else "failed"] += 1
    if errors and len(first_failures) < 20:
      first_failures.append({k: rec.get(k) for k in _KEY_FIELDS if k in rec} | {
          "errors": errors})
  out = {}
  for c in columns:
    v = np.asarray(values[c], np.float64)
    v = v[np.isfinite(v)]
    stats = ({"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
              "max": float(v.max())} if v.size else {})
    out[c] = {**counts[c], **stats}
  return {"columns": out, "first_failures": first_failures}


def run(config, workdir: str, overwrite: bool = False) -> dict:
  import shutil

  from tqdm import tqdm

  run_dir = layout.StageDir(workdir)
  samples_dir, scores_dir = run_dir.samples, run_dir.scores
  if not has_records(samples_dir):
    raise FileNotFoundError(f"no sample shards in {samples_dir}; run `python -m ai_jax.sample "
                            f"--workdir {workdir}` first")
  settings_ = settings(config)
  scorers = settings_.scorers
  tokenizer, tokenizer_source = None, None
  if any(s.needs_tokenizer for s in scorers.values()):
    tokenizer, tokenizer_source = _resolve_tokenizer(settings_, workdir)
  prompts_by_id = (_prompt_texts(settings_, workdir)
                   if any(s.needs_prompts for s in scorers.values()) else None)

  # Read and check every input before writing anything.
  rows = list(iter_records(samples_dir))
  _check_sample_rows(samples_dir, rows)

  fields = {"columns": settings_.columns(), "tokenizer": tokenizer_source}
  if overwrite and os.path.isdir(scores_dir):
    shutil.rmtree(scores_dir)
  if not fingerprint_lib.check(scores_dir, fields):
    if has_records(scores_dir):
      raise fingerprint_lib.FingerprintMismatch(
          f"{scores_dir} holds scores without a fingerprint; pass --overwrite or use a new "
          "workdir (nothing was changed)")
    fingerprint_lib.write(scores_dir, fields)
  write_json_atomic(run_dir.scores_metrics,
                    {"columns": {c: s.info() for c, s in scorers.items()},
                     "tokenizer": tokenizer_source})
  index, count = settings_.host
  store = RecordStore(scores_dir, settings_.records_per_shard,
                      writer=hosts.writer_name(index, count))
  # Each host scores its own prompts' samples.
  todo = [r for r in rows if record_key(r) not in store
          and hosts.owner(r["prompt_id"], count) == index]

  t0 = time.time()
  chunk = settings_.rows_per_append
  with tqdm(total=len(todo) * len(scorers), unit="score", desc="scoring",
            dynamic_ncols=True) as bar:
    for lo in range(0, len(todo), chunk):
      out, _ = score_rows(scorers, todo[lo:lo + chunk], (prompts_by_id, tokenizer),
                          on_rows=bar.update)
      store.append(out)
  seconds = time.time() - t0
  sample_keys = {record_key(r) for r in rows}
  summary = summarize_scores((r for r in store.records() if record_key(r) in sample_keys),
                             list(scorers))
  summary.update(rows_scored_now=len(todo), rows_already_scored=len(rows) - len(todo),
                 seconds=round(seconds, 2),
                 texts_per_second=round(len(todo) / max(seconds, 1e-9), 1))
  write_json_atomic(run_dir.scores_summary, summary)
  return summary
