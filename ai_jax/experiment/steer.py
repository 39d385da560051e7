r"""STEER end to end (O'Neill et al. 2023, arXiv 2308.07645): data -> expert -> sample ->
metrics -> report, per task.

  python -m experiments.steer --config configs/steer.py:smoke --workdir /tmp/steer_smoke \
      --config.base_path=/path/to/tiny/hf

For each task (configs/steer.py's `tasks`) the real examples are split once (by the seed)
into `num_train` examples, on which the expert is fine-tuned from the base model and which
seed the negative pool, and `num_reference` held-out ones, which the metrics compare the
synthetic examples with. Every arm then answers `num_generate` copies of the task's
instruction (one sample each, so STEER's pool takes in the samples round by round): the
expert or the base with plain sampling, or the expert with STEER at its (gamma, eta).

Every step is a stage's library code (ai_jax.training.trainer, ai_jax.stages.sample) on
a folder of DIR (ai_jax.run.layout.SteerDir), so each resumes by its own rules:

  DIR/data/<task>/        real_train, real_reference, expert_train, generate (.jsonl)
  DIR/experts/<task>/     the expert's training folder (export/hf, trained.json)
  DIR/samples/<task>/<arm>/   the arm's sample stage folder
  DIR/metrics/<task>.json arm -> corpus metric -> value with a bootstrap interval
  DIR/report.md, DIR/summary.json, DIR/plots/, DIR/stages.json
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil

import ml_collections
import numpy as np

from ai_jax.experiment.plan import ExperimentConfigError, copy_config, fail
from ai_jax.experiment.stages import Stage, check_stage_names, run_experiment
from ai_jax.run import layout
from ai_jax.store.atomic import read_json, write_json_atomic, write_jsonl_atomic

# Keys of the stage sections that the experiment sets per task and arm -> what sets them.
# configs/steer.py removes them from its sections.
GOVERNED = {
    "sample.model.path": "base_path and arms.<arm>.model (the task's expert or the base)",
    "sample.model.name": "arms (each arm samples under its own name)",
    "sample.prompts": "tasks.<task>.instruction and num_generate",
    "sample.host": "the experiment (STEER's pool needs one host)",
    "sample.sampling.k": "num_generate (one sample per generation prompt)",
    "sample.sampling.decoder": "arms.<arm>.decoder",
    "sample.sampling.seed": "seed",
    "sample.steer.base_path": "base_path",
    "sample.steer.gamma": "arms.<arm>.gamma and grid.gammas",
    "sample.steer.eta": "arms.<arm>.eta and grid.etas",
    "sample.steer.real_path": "tasks.<task>.real_path (its training split seeds the pool)",
    "sample.steer.real_field": "tasks.<task>.real_field",
    "train.model.path": "base_path (every expert starts from the base)",
    "train.data.path": "tasks (an expert trains on its task's real examples)",
    "train.seed": "seed",
    "train.export": "the experiment (each expert is exported, then sampled)",
}
TASK_KEYS = ("real_path", "real_field", "instruction", "num_train", "num_reference")
ARM_KEYS = ("model", "decoder", "gamma", "eta")
METRIC_KEYS = ("num_bootstrap", "ngram_n", "folds")


@dataclasses.dataclass(frozen=True)
class Task:
  name: str
  real_path: str
  real_field: str
  instruction: str
  num_train: int
  num_reference: int


@dataclasses.dataclass(frozen=True)
class Arm:
  name: str
  model: str          # "expert" | "base"
  decoder: str        # "plain" | "steer"
  gamma: float = 0.0
  eta: float = 0.0


@dataclasses.dataclass(frozen=True)
class SteerPlan:
  config: ml_collections.ConfigDict
  dirs: layout.SteerDir
  base_path: str
  tasks: tuple[Task, ...]
  arms: tuple[Arm, ...]
  real: dict            # task -> {"train": [...], "reference": [...]} of {prompt_id, prompt}

  def train_config(self, task: str) -> ml_collections.ConfigDict:
    c = copy_config(self.config.train)
    c.model.path, c.data.path, c.seed = self.base_path, self.dirs.data(task, "expert_train"), (
        int(self.config.seed))
    c.export = ml_collections.ConfigDict({"hf": True})
    return c

  def sample_config(self, task: str, arm: Arm, model_path: str) -> ml_collections.ConfigDict:
    from ai_jax.sampling import steer
    c = copy_config(self.config.sample)
    c.model.path, c.model.name = model_path, arm.name
    c.prompts = ml_collections.ConfigDict({
        "path": self.dirs.data(task, "generate"), "limit": 0, "field": "", "split": "",
        "held_out_fraction": 0.1, "split_salt": ""})
    c.host = ml_collections.ConfigDict({"index": 0, "num_hosts": 1})
    c.sampling.k = 1
    c.sampling.seed = int(self.config.seed)
    c.sampling.decoder = arm.decoder
    block = steer.default_block()
    if arm.decoder == "steer":
      block.update({k: v for k, v in self.config.sample.steer.items()},
                   base_path=self.base_path, gamma=arm.gamma, eta=arm.eta,
                   real_path=self.dirs.data(task, "real_train"), real_field="")
    c.steer = ml_collections.ConfigDict(block)
    return c


def _int(value, key: str, low: int = 1) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < low:
    fail(f"config.{key} must be an integer >= {low}, got {value!r}")
  return value


def _arms(config) -> tuple[Arm, ...]:
  from ai_jax.sampling import steer
  arms = []
  for name, spec in config.arms.items():
    spec = dict(spec)
    unknown = sorted(set(spec) - set(ARM_KEYS))
    if unknown:
      fail(f"config.arms.{name} has unknown keys {unknown}; an arm has {ARM_KEYS}")
    model, decoder = spec.get("model"), spec.get("decoder", "plain")
    if model not in ("expert", "base"):
      fail(f"config.arms.{name}.model={model!r}; choose 'expert' or 'base'")
    if decoder not in steer.DECODERS:
      fail(f"config.arms.{name}.decoder={decoder!r}; choose one of {steer.DECODERS}")
    if decoder == "plain" and ({"gamma", "eta"} & set(spec)):
      fail(f"config.arms.{name} sets gamma/eta with decoder 'plain'; use decoder 'steer'")
    if decoder == "steer" and model != "expert":
      fail(f"config.arms.{name}: STEER guides the expert (model 'expert'), got {model!r}")
    try:
      weights = {k: steer.check_weight(f"config.arms.{name}.{k}", spec.get(k, 0.0))
                 for k in ("gamma", "eta")}
    except ValueError as e:
      fail(str(e))
    arms.append(Arm(name=name, model=model, decoder=decoder, **weights))
  for gamma in config.grid.gammas:
    for eta in config.grid.etas:
      try:
        g, e = (steer.check_weight(f"config.grid.{k}", v) for k, v in (("gammas", gamma),
                                                                   ("etas", eta)))
      except ValueError as err:
        fail(str(err))
      arms.append(Arm(name=f"grid_g{g:g}_e{e:g}", model="expert", decoder="steer", gamma=g,
                      eta=e))
  names = [a.name for a in arms]
  dup = sorted({n for n in names if names.count(n) > 1})
  if dup:
    fail(f"arm names {dup} occur twice (config.arms and config.grid); rename one")
  if not arms:
    fail("no arms: config.arms and config.grid are both empty")
  return tuple(arms)


def _split(task: Task, seed: int) -> dict:
  """The task's real examples, shuffled by (seed, task name): train first, then the
  reference. Refuses a set too small for both."""
  from ai_jax.data import prompts as prompts_lib
  try:
    rows = prompts_lib.load_prompt_set(task.real_path, field=task.real_field or None,
                                       dedupe=True)
  except (OSError, ValueError) as e:
    fail(f"config.tasks.{task.name}.real_path: {e}")
  need = task.num_train + task.num_reference
  if need > len(rows):
    fail(f"config.tasks.{task.name}: num_train + num_reference = {need}, but "
         f"{task.real_path!r} has {len(rows)} distinct examples; lower them")
  digest = int.from_bytes(hashlib.blake2b(task.name.encode(), digest_size=4).digest(), "little")
  order = np.random.default_rng([seed, digest]).permutation(len(rows))
  pick = lambda idx: [{"prompt_id": rows[i]["prompt_id"],  # noqa: E731
                       "prompt": prompts_lib.prompt_text(rows[i]["prompt"])} for i in idx]
  return {"train": pick(order[:task.num_train]),
          "reference": pick(order[task.num_train:need])}


def plan(config, workdir: str) -> SteerPlan:
  """Checks everything cheap (no weights) and resolves the run."""
  from ai_jax import loading
  from ai_jax.config_files import has_key
  from ai_jax.stages import sample as sample_stage
  from ai_jax.training import trainer
  for key, by in GOVERNED.items():
    if has_key(config, key):
      fail(f"config.{key} is set by the experiment from config.{by}; leave it out "
           "(configs/steer.py removes it)")
  try:
    base_path = loading.resolve_model_path(config.base_path or None)
  except (OSError, ValueError) as e:
    fail(f"config.base_path: {e}")
  tasks = []
  for name, spec in config.tasks.items():
    unknown = sorted(set(spec) - set(TASK_KEYS))
    missing = sorted(set(TASK_KEYS) - set(spec))
    if unknown or missing:
      fail(f"config.tasks.{name}: unknown keys {unknown}, missing keys {missing}; a task has "
           f"{TASK_KEYS}")
    if not str(spec.instruction).strip():
      fail(f"config.tasks.{name}.instruction is empty")
    tasks.append(Task(name=name, real_path=spec.real_path, real_field=spec.real_field,
                      instruction=spec.instruction,
                      num_train=_int(spec.num_train, f"tasks.{name}.num_train"),
                      num_reference=_int(spec.num_reference, f"tasks.{name}.num_reference")))
  if not tasks:
    fail("config.tasks is empty: name at least one task")
  num_generate = _int(config.num_generate, "num_generate")
  unknown = sorted(set(config.metrics) - set(METRIC_KEYS))
  if unknown:
    fail(f"config.metrics has unknown keys {unknown}; known: {METRIC_KEYS}")
  _int(config.metrics.num_bootstrap, "metrics.num_bootstrap", 0)
  _int(config.metrics.ngram_n, "metrics.ngram_n")
  folds = _int(config.metrics.folds, "metrics.folds", 2)
  arms = _arms(config)
  num_negatives = config.sample.steer.num_negatives
  real = {}
  for task in tasks:
    if num_negatives > task.num_train and any(a.decoder == "steer" for a in arms):
      fail(f"config.sample.steer.num_negatives={num_negatives} is larger than the pool's "
           f"real part, config.tasks.{task.name}.num_train={task.num_train}")
    if folds > min(num_generate, task.num_reference):
      fail(f"config.metrics.folds={folds} needs at least that many texts on each side; "
           f"num_generate={num_generate}, tasks.{task.name}.num_reference="
           f"{task.num_reference}")
    real[task.name] = _split(task, int(config.seed))
  p = SteerPlan(config=config, dirs=layout.SteerDir(workdir), base_path=base_path,
                tasks=tuple(tasks), arms=arms, real=real)
  # The stage configs, checked by the stages' own readers (the base stands in for an
  # expert that is not trained yet).
  for arm in arms:
    try:
      sample_stage.settings(p.sample_config(tasks[0].name, arm, base_path))
    except (ValueError, FileNotFoundError) as e:
      fail(f"config.sample (arm {arm.name}): {e}")
  try:
    trainer.settings(p.train_config(tasks[0].name))
  except (ValueError, TypeError) as e:
    fail(f"config.train: {e}")
  return p


# --------------------------------------------------------------------------- stages

def stage_data(p: SteerPlan) -> dict:
  """Per task: the real split, the expert's (instruction, real example) pairs and the
  generation prompts, one file each; later stages read these files."""
  out = {}
  for task in p.tasks:
    real = p.real[task.name]
    write_jsonl_atomic(p.dirs.data(task.name, "real_train"), real["train"])
    write_jsonl_atomic(p.dirs.data(task.name, "real_reference"), real["reference"])
    write_jsonl_atomic(p.dirs.data(task.name, "expert_train"),
                       [{"prompt_id": r["prompt_id"], "prompt": task.instruction,
                         "completion": r["prompt"]} for r in real["train"]])
    write_jsonl_atomic(p.dirs.data(task.name, "generate"),
                       [{"prompt_id": f"{task.name}-{i:05d}", "prompt": task.instruction}
                        for i in range(int(p.config.num_generate))])
    out[task.name] = {"num_train": len(real["train"]), "num_reference": len(real["reference"])}
  return out


def _expert_path(p: SteerPlan, task: str) -> str:
  marker = read_json(p.dirs.expert(task).finished_marker, None)
  if marker is None:
    raise FileNotFoundError(f"the expert of task {task!r} is not trained yet (run the expert "
                            "stage; it resumes)")
  return marker["export"]


def stage_expert(p: SteerPlan) -> dict:
  """Fine-tunes the base on each task's real examples (full or LoRA, as config.train
  says); resumes from its checkpoints, and is skipped once exported."""
  from ai_jax.training import trainer
  out = {}
  for task in p.tasks:
    folder = p.dirs.expert(task.name)
    marker = read_json(folder.finished_marker, None)
    if marker is None:
      summary = trainer.run(p.train_config(task.name), folder.root)
      if not summary["finished"]:
        raise RuntimeError(f"the expert of task {task.name!r} stopped at step "
                           f"{summary['stopped_at_step']} of {summary['steps']}; rerun to resume")
      marker = {"export": summary["export"],
                "summary": {k: summary[k] for k in ("steps", "first_loss", "final_loss")}}
      write_json_atomic(folder.finished_marker, marker)
      shutil.rmtree(folder.checkpoints, ignore_errors=True)  # the export is the product
    out[task.name] = marker
  return out


def stage_sample(p: SteerPlan) -> dict:
  from ai_jax import loading
  from ai_jax.stages import sample
  out = {}
  with loading.reuse_models():  # the base and each expert are read once for all arms
    for task in p.tasks:
      expert = _expert_path(p, task.name)
      for arm in p.arms:
        path = expert if arm.model == "expert" else p.base_path
        summary = sample.run(p.sample_config(task.name, arm, path),
                             p.dirs.arm(task.name, arm.name).root)
        out[f"{task.name}/{arm.name}"] = {k: summary[k] for k in (
            "num_records", "cut_by_max_new_tokens_share", "sample_seconds")}
  return out


def stage_metrics(p: SteerPlan) -> dict:
  from ai_jax.experiment import steer_metrics
  return {task.name: steer_metrics.task_metrics(p, task) for task in p.tasks}


def stage_report(p: SteerPlan) -> dict:
  from ai_jax.profiling import steer_report
  summary = steer_report.summary(p, read_json(p.dirs.stage_seconds, {}))
  files = steer_report.write_report(summary, p.dirs)
  write_json_atomic(p.dirs.summary, summary)
  return {"files": files}


STAGES = (
    Stage("data", stage_data, lambda d: (d.data_root,)),
    Stage("expert", stage_expert, lambda d: (d.experts_root,)),
    Stage("sample", stage_sample, lambda d: (d.samples_root,)),
    Stage("metrics", stage_metrics, lambda d: (d.metrics_root,)),
    Stage("report", stage_report, lambda d: (d.report, d.summary, d.plots)),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def run(config, workdir: str, overwrite: bool = False,
        stages: tuple[str, ...] = STAGE_NAMES) -> dict:
  """Runs (or resumes) the experiment; returns summary.json's contents (or, without the
  report stage, the last stage's result)."""
  check_stage_names(stages, STAGES)
  p = plan(config, workdir)
  return run_experiment(STAGES, stages, p, json.loads(json.dumps(config.to_dict())), overwrite)


__all__ = ["ExperimentConfigError", "GOVERNED", "STAGE_NAMES", "plan", "run"]
