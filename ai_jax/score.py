r"""Score every sample shard of a run with the configured metrics.

  python -m ai_jax.score --config configs/score.py --workdir DIR
  python -m ai_jax.score --config configs/score.py:smoke --workdir DIR \
      --config.metrics="('length_words', 'mtld', 'tox=toxicity_offline')"

Reads DIR/samples/shard-*.jsonl and writes, for each, DIR/scores/shard-*.jsonl with the
same rows in the same order: prompt_id, sample_index (and teacher when present), one
column per metric (null where the metric has no value) and score_errors {column: reason}.
DIR/scores/metrics.json records each column's metric, options, version and what a higher
value means; DIR/scores/summary.json counts rows, failures and undefined values.

Rerunning skips shards already scored with the same metrics.json (each shard is written
whole, so a crash leaves none half-written); different metrics need --overwrite or a new
workdir, so old and new definitions are never mixed.
"""

from __future__ import annotations

import glob
import json
import math
import os
import time

from ai_jax.metrics import registry, runner
from ai_jax.store.atomic import read_jsonl, write_json_atomic, write_jsonl_atomic

_KEY_FIELDS = ("prompt_id", "teacher", "sample_index")
_NOT_SAMPLED = ("prompt_too_long",)


def _resolve_tokenizer(config, workdir):
  """(tokenizer, source) per config.tokenizer: 'sampler' = the model that sampled DIR."""
  from ai_jax import loading
  choice = config.tokenizer
  if choice == "sampler":
    sample_config = os.path.join(workdir, "sample_config.json")
    if not os.path.exists(sample_config):
      raise FileNotFoundError(f"config.tokenizer='sampler' reads {sample_config}, which is "
                              "missing; set config.tokenizer to 'model' or a tokenizer path")
    with open(sample_config, encoding="utf-8") as f:
      choice = json.load(f).get("model", {}).get("path", "") or "model"
  return loading.load_tokenizer(None if choice == "model" else choice)


def _prompt_texts(config, workdir) -> dict[str, str]:
  from ai_jax.data import prompts as prompts_lib
  path = config.prompts_path
  if not path:
    sample_config = os.path.join(workdir, "sample_config.json")
    if not os.path.exists(sample_config):
      raise FileNotFoundError(f"a metric needs the prompts: set config.prompts_path ("
                              f"{sample_config} is missing)")
    with open(sample_config, encoding="utf-8") as f:
      path = json.load(f)["prompts"]["path"]
  return {p["prompt_id"]: _prompt_text(p["prompt"]) for p in prompts_lib.read_prompts_jsonl(path)}


def _prompt_text(prompt) -> str:
  """A scorer sees a chat prompt as its last user message, the instruction answered."""
  if isinstance(prompt, str):
    return prompt
  users = [m.get("content", "") for m in prompt if m.get("role") == "user"]
  return users[-1] if users else ""


def _fingerprint(manifest: dict):
  """What must match for old scores to be reused (descriptions may change freely)."""
  return ({c: (i["name"], i["version"], i["options"]) for c, i in manifest["columns"].items()},
          manifest.get("tokenizer"))


def _row_keys(rows) -> list[tuple]:
  return [tuple(r.get(k) for k in _KEY_FIELDS) for r in rows]


def _check_sample_rows(path: str, rows: list[dict]) -> None:
  for i, row in enumerate(rows):
    missing = [k for k in ("prompt_id", "sample_index", "text") if k not in row]
    if missing or not isinstance(row["text"], str):
      what = f"lacks {missing}" if missing else "has a non-string text"
      raise ValueError(f"{path}: row {i + 1} {what}; sample shards come from ai_jax.sample "
                       "(prompt_id, sample_index, text)")


def score_shard(scorers, rows, context_extra, on_rows=None) -> tuple[list[dict], runner.ScoreTable]:
  """Scores one shard's rows; returns (score rows in the same order, table)."""
  prompts_by_id, tokenizer = context_extra
  skip = {i: f"not sampled: {r['finish_reason']}" for i, r in enumerate(rows)
          if r.get("finish_reason") in _NOT_SAMPLED}
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
    rec["score_errors"] = table.errors[i]
    out.append(rec)
  return out, table


def summarize_scores(score_paths, columns) -> dict:
  """Counts and statistics over the given score shards (resumed ones included)."""
  import numpy as np
  values = {c: [] for c in columns}
  counts = {c: {"rows": 0, "failed": 0, "undefined": 0} for c in columns}
  first_failures = []
  for path in score_paths:
    for rec in read_jsonl(path):
      errors = rec.get("score_errors", {})
      for c in columns:
        value = rec.get(c)
        values[c].append(math.nan if value is None else value)
        counts[c]["rows"] += 1
        if c in errors:
          counts[c]["undefined" if runner.is_undefined(errors[c]) else "failed"] += 1
      if errors and len(first_failures) < 20:
        first_failures.append({"prompt_id": rec.get("prompt_id"),
                               "sample_index": rec.get("sample_index"), "errors": errors})
  out = {}
  for c in columns:
    v = np.asarray(values[c], np.float64)
    v = v[np.isfinite(v)]
    stats = ({"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
              "max": float(v.max())} if v.size else {})
    out[c] = {**counts[c], **stats}
  return {"columns": out, "first_failures": first_failures}


def run(config, workdir: str, overwrite: bool = False) -> dict:
  from tqdm import tqdm

  samples_dir, scores_dir = os.path.join(workdir, "samples"), os.path.join(workdir, "scores")
  sample_paths = sorted(glob.glob(os.path.join(samples_dir, "shard-*.jsonl")))
  if not sample_paths:
    raise FileNotFoundError(f"no sample shards in {samples_dir}; run `python -m ai_jax.sample "
                            f"--workdir {workdir}` first")
  scorers = registry.scorers_from_specs(list(config.metrics))
  tokenizer, tokenizer_source = None, None
  if any(s.needs_tokenizer for s in scorers.values()):
    tokenizer, tokenizer_source = _resolve_tokenizer(config, workdir)
  prompts_by_id = (_prompt_texts(config, workdir)
                   if any(s.needs_prompts for s in scorers.values()) else None)

  # Read and check every input before writing anything.
  shards = [(p, read_jsonl(p)) for p in sample_paths]
  for path, rows in shards:
    _check_sample_rows(path, rows)

  manifest = {"columns": {c: s.info() for c, s in scorers.items()},
              "tokenizer": tokenizer_source}
  manifest_path = os.path.join(scores_dir, "metrics.json")
  old_shards = sorted(glob.glob(os.path.join(scores_dir, "shard-*.jsonl")))
  same = False
  if os.path.exists(manifest_path):
    with open(manifest_path, encoding="utf-8") as f:
      same = _fingerprint(json.load(f)) == _fingerprint(json.loads(json.dumps(manifest)))
  if old_shards and not same:
    if not overwrite:
      raise FileExistsError(f"{scores_dir} holds scores made with other metrics, options or "
                            f"versions (see {manifest_path}); pass --overwrite or use a new "
                            "workdir (nothing was changed)")
    for path in old_shards:
      os.remove(path)
  os.makedirs(scores_dir, exist_ok=True)
  write_json_atomic(manifest_path, manifest)

  todo, skipped = [], 0
  for path, rows in shards:
    out_path = os.path.join(scores_dir, os.path.basename(path))
    # A shard counts as done only if it holds exactly this samples shard's keys, in order.
    if os.path.exists(out_path) and _row_keys(read_jsonl(out_path)) == _row_keys(rows):
      skipped += 1
    else:
      todo.append((path, out_path, rows))

  t0 = time.time()
  num_rows = sum(len(rows) for _, _, rows in todo)
  with tqdm(total=num_rows * len(scorers), unit="score", desc="scoring",
            dynamic_ncols=True) as bar:
    for _, out_path, rows in todo:
      out, _ = score_shard(scorers, rows, (prompts_by_id, tokenizer), on_rows=bar.update)
      write_jsonl_atomic(out_path, out)
  seconds = time.time() - t0
  out_paths = [os.path.join(scores_dir, os.path.basename(p)) for p in sample_paths]
  summary = summarize_scores(out_paths, list(scorers))
  summary.update(shards_scored=len(todo), shards_already_scored=skipped, rows_scored=num_rows,
                 seconds=round(seconds, 2),
                 texts_per_second=round(num_rows / max(seconds, 1e-9), 1))
  write_json_atomic(os.path.join(scores_dir, "summary.json"), summary)
  return summary


if __name__ == "__main__":
  from ai_jax import cli
  cli.run_stage(run, "--config configs/score.py --workdir /tmp/run",
                help_config="Scoring config file.", hide=("first_failures",))
