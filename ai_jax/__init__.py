"""ai_jax: steer language models through the data they learn from.

The calls a notebook needs, each a thin door into the library (the stage commands
`python -m ai_jax.sample|score|select|train` and the experiments use the same code):

  load_model, export_hf    a model from a GGUF file or an HF folder, and back to HF
  sample                   k completions per prompt, as records
  score                    metric columns for texts or records
  select                   one record per prompt by a selection strategy
  load_config              a config file (path.py[:arg]) with checked overrides
  train                    fine-tune a student (configs/train.py's keys)
  run_experiment           the active-inheritance experiment from its config

Each docstring example runs in tests/test_public_api.py, in this order, in one namespace
(so `model` is the model load_model's example loaded).
"""

from __future__ import annotations

import sys
import types
from typing import Any, Mapping, Sequence

__all__ = ["load_model", "export_hf", "sample", "score", "select", "load_config", "train",
           "run_experiment"]


def load_model(path: str | None = None, *, dtype: str = "float32", mesh_shape=(-1, 1)):
  """Config, params (placed on a mesh over the local devices) and tokenizer of a model.

  path: a .gguf file or an HF folder (safetensors + config.json); None = the embedded
  SmolLM2-135M-Instruct. dtype: the compute dtype, "float32" or "bfloat16".

  >>> model = ai_jax.load_model()
  >>> model.config.num_layers, model.tokenizer.vocab_size
  (30, 49152)
  """
  from ai_jax import loading
  return loading.load_model(path, dtype=dtype, mesh_shape=mesh_shape)


def export_hf(model, path: str, *, overwrite: bool = False) -> str:
  """Writes a model as an HF checkpoint (safetensors, config.json, tokenizer) that
  load_model and transformers both read; returns path.

  >>> out = ai_jax.export_hf(model, f"{tmp}/smollm2_hf")
  >>> ai_jax.load_model(out, mesh_shape=None).config == model.config
  True
  """
  from ai_jax import loading
  loading.export_hf(model, path, overwrite=overwrite)
  return path


def sample(model, prompts: Sequence, *, k: int = 1, max_new_tokens: int = 64,
           temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
           seed: int = 0, **options) -> list[dict]:
  """k completions per prompt as records {prompt_id, sample_index, text, finish_reason,
  num_tokens, ...}, ordered by prompt then sample index. prompts: strings, or dicts with
  "prompt_id" and "prompt" (a string or chat messages). temperature 0 = greedy. Each
  sample's randomness is keyed by (seed, prompt_id, sample_index).

  >>> records = ai_jax.sample(model, ["Name a colour.", "Name a fruit."], k=2,
  ...                         max_new_tokens=8, temperature=0.8)
  >>> [(r["prompt_id"] == records[0]["prompt_id"], r["sample_index"]) for r in records]
  [(True, 0), (True, 1), (False, 0), (False, 1)]
  >>> {r["finish_reason"] for r in records} <= {"stop", "length"}
  True
  """
  from ai_jax.sampling import sampler
  return sampler.sample(model, prompts, k=k, max_new_tokens=max_new_tokens,
                        temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                        **options)


def score(texts_or_records: Sequence, metrics: Sequence[str] = ("length_words",), *,
          prompts: Sequence[str] | None = None, tokenizer=None) -> list[dict]:
  """One dict per text: each metric column (None where it has no value) and
  "score_errors" {column: why}. Given records (dicts with "text"), the columns are added
  to a copy of each record. Metric specs as in configs/score.py ("mtld",
  "d3=distinct_n(n=3)", "package.module:function").

  >>> ai_jax.score(["One two three.", "Four five."], ["length_words"])
  [{'length_words': 3.0, 'score_errors': {}}, {'length_words': 2.0, 'score_errors': {}}]
  >>> records = ai_jax.score(records, ["length_words", "mtld"])
  """
  import math

  from ai_jax import metrics as metrics_lib
  from ai_jax.run import layout
  records = [r if isinstance(r, Mapping) else {"text": r} for r in texts_or_records]
  table = metrics_lib.score([r["text"] for r in records], list(metrics), prompts=prompts,
                            tokenizer=tokenizer)
  out = []
  for i, record in enumerate(records):
    row = {} if not isinstance(texts_or_records[i], Mapping) else dict(record)
    for column, values in table.values.items():
      row[column] = None if math.isnan(float(values[i])) else float(values[i])
    row[layout.SCORE_ERRORS] = table.errors[i]
    out.append(row)
  return out


def select(records: Sequence[Mapping], strategy: Mapping[str, Any]) -> dict:
  """Per prompt, the record a strategy keeps: {"chosen": [record, ...] (prompt order),
  "dropped": {prompt_id: reason}}. records: scored sample records (see score); strategy:
  a config of ai_jax.selection.strategies ({"name": "best", "metric": ...}, "random",
  "first", "weighted", "pareto", "threshold", "from_teachers", "self_consistency").

  >>> picked = ai_jax.select(records, {"name": "best", "metric": "length_words"})
  >>> len(picked["chosen"]) + len(picked["dropped"])
  2
  """
  from ai_jax.selection import candidates, strategies
  chosen_strategy = strategies.from_config(dict(strategy))
  by_key = {(str(r["prompt_id"]), str(r.get("teacher", "")), int(r["sample_index"])): r
            for r in records}
  groups = candidates.group_candidates(list(records), chosen_strategy.required_metrics(),
                                       with_texts=chosen_strategy.needs_texts())
  out = {"chosen": [], "dropped": {}}
  for group, choice in zip(groups, chosen_strategy.select(groups)):
    if choice.index is None:
      out["dropped"][group.prompt_id] = choice.reason
      continue
    key = (group.prompt_id, group.teachers[choice.index], group.sample_indices[choice.index])
    out["chosen"].append(by_key[key])
  return out


def load_config(spec: str, overrides: Mapping[str, Any] | None = None):
  """The ConfigDict of a config file ("path/to/config.py[:arg]"), with {dotted key:
  value} overrides; a key the file does not declare is refused by name.

  >>> config = ai_jax.load_config("configs/train.py:smoke", {"train.steps": 1})
  >>> config.train.steps, config.data.max_len
  (1, 64)
  """
  from ai_jax import config_files
  from ai_jax.experiment.plan import GOVERNED
  config = config_files.load(spec)
  governed = GOVERNED if "active_inheritance" in str(spec) else None
  return config_files.apply(config, dict(overrides or {}), governed)


def train(config, workdir: str, examples: Sequence[Mapping] | None = None) -> dict:
  """Fine-tunes config.model.path on a training set (configs/train.py's keys); returns the
  run's summary (the student is in summary["export"]). examples: rows {"prompt",
  "completion"} used instead of config.data.path (written to the run folder first).
  Rerunning resumes from the newest checkpoint. Here one step of rank-8 LoRA adapters
  (merged into the exported student; "lora.rank": 0 fine-tunes every weight):

  >>> config = ai_jax.load_config("configs/train.py:smoke", {
  ...     "model.path": out, "train.steps": 1, "train.batch_size": 1, "mesh_shape": (1, 1),
  ...     "lora.rank": 8})
  >>> summary = ai_jax.train(config, f"{tmp}/student",
  ...                        examples=[{"prompt": "Name a colour.", "completion": "Blue."}])
  >>> summary["steps"], summary["finished"]
  (1, True)
  >>> student = ai_jax.load_model(summary["export"], mesh_shape=None)
  """
  import ml_collections

  from ai_jax.run import layout
  from ai_jax.store.atomic import write_jsonl_atomic
  from ai_jax.training import trainer
  if examples is not None:
    config = ml_collections.ConfigDict(config.to_dict())
    config.data.path = layout.TrainDir(workdir).given_examples
    write_jsonl_atomic(config.data.path, [dict(e) for e in examples])
  return trainer.run(config, workdir)


def run_experiment(config, workdir: str, *, stages: Sequence[str] | None = None,
                   overwrite: bool = False) -> dict:
  """Runs (or resumes) the active-inheritance experiment; returns summary.json's contents.
  config: a ConfigDict or a spec "configs/active_inheritance.py[:smoke|:paper]".

  >>> summary = ai_jax.run_experiment("configs/active_inheritance.py:smoke", smoke_run)
  >>> sorted(summary["arms"])
  ['base', 'first', 'longest', 'random']
  """
  from ai_jax.experiment import active_inheritance
  if isinstance(config, str):
    config = load_config(config)
  kwargs = {} if stages is None else {"stages": tuple(stages)}
  return active_inheritance.run(config, workdir, overwrite=overwrite, **kwargs)


class _Package(types.ModuleType):
  """`ai_jax.sample` etc. stay these functions when the command modules of the same names
  (ai_jax/sample.py, run by `python -m ai_jax.sample`) are imported: the import system
  would otherwise set the package attribute to the module and shadow the function."""

  def __setattr__(self, name, value):
    if name in __all__ and isinstance(value, types.ModuleType):
      return
    super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
