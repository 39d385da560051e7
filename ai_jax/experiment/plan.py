"""Validation of an active-inheritance config and the plan derived from it: arms, prompt
sets (evaluation prompts never among the training prompts), the training step budget and
every stage's resolved config.

Everything here is cheap (no weights, no compiling), so a bad value (an unknown metric,
k=0, a missing prompt file, arm names that collide, a key the experiment sets itself)
stops a run before any compute, with the setting's name in the message.

The stage sections of the experiment config (sample, score, train) are the stage CLIs'
own configs less the keys the experiment sets itself (GOVERNED): those keys do not exist
in the experiment config, so setting one is refused with the key that governs it, and
every key that does exist reaches a stage (tests/test_config_schema.py walks them all).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re

import ml_collections

from ai_jax.run import layout

BASELINE_ARMS = ("random", "first")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# Keys of the stage configs that the experiment sets itself -> the experiment key that
# governs them. configs/active_inheritance.py removes them from its stage sections.
GOVERNED = {
    "sample.model.path": "teachers (name -> model path)",
    "sample.model.name": "teachers (name -> model path)",
    "sample.prompts": "prompts.train (the teachers answer the training prompts; the "
                      "evaluations read prompts.eval and eval.modes)",
    "sample.host": "host",
    "score.tokenizer": "student.path (texts are counted in the student's tokens)",
    "score.prompts_path": "prompts.train",
    "score.host": "host",
    "train.model.path": "student.path",
    "train.data.path": "arms (each arm's selection is its training set)",
    "train.seed": "seed",
    "train.export": "the experiment (every arm's student is exported and evaluated)",
    "train.checkpoint.keep": "keep_checkpoints",
    "profile.model.path": "student.path and arms (the profile stage runs on the untuned "
                          "student and on every arm's student)",
}


class ExperimentConfigError(ValueError):
  pass


def remove_governed(config: ml_collections.ConfigDict, governed=None
                    ) -> ml_collections.ConfigDict:
  """Deletes the governed keys (default GOVERNED) from a config (in place)."""
  for key in (GOVERNED if governed is None else governed):
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
      node = node[part]
    if leaf in node:
      del node[leaf]
  return config


def _check_governed(config) -> None:
  from ai_jax.config_files import has_key
  for key, by in GOVERNED.items():
    if has_key(config, key):
      fail(f"config.{key} is set by the experiment from config.{by}; set that instead and "
           f"leave {key} out of the config (configs/active_inheritance.py removes it)")


@dataclasses.dataclass(frozen=True)
class StageConfigs:
  """Every stage's config as the experiment runs it, resolved once from the experiment
  config. Model paths and training sets that exist only once earlier stages ran are
  filled in by the stages (stage_train, stage_evaluate)."""
  sample: dict            # teacher name -> sample config
  teacher_score: ml_collections.ConfigDict
  select: ml_collections.ConfigDict
  train: ml_collections.ConfigDict   # model.path = the configured student; data.path = ""
  eval_sample: dict       # mode -> sample config (model.path/name = "" until a student)
  eval_score: dict        # mode -> score config
  report: dict            # title, bootstrap settings, shown metrics, toxicity threshold
  keep_checkpoints: bool
  profile: ml_collections.ConfigDict  # configs/profile.py's; model.path set per student

  def to_dict(self) -> dict:
    """Plain JSON-able form (what tests compare)."""
    plain = lambda c: c.to_dict() if hasattr(c, "to_dict") else c  # noqa: E731
    return {"sample": {k: plain(v) for k, v in self.sample.items()},
            "teacher_score": plain(self.teacher_score), "select": plain(self.select),
            "train": plain(self.train),
            "eval_sample": {k: plain(v) for k, v in self.eval_sample.items()},
            "eval_score": {k: plain(v) for k, v in self.eval_score.items()},
            "report": dict(self.report), "keep_checkpoints": self.keep_checkpoints,
            "profile": plain(self.profile)}


@dataclasses.dataclass
class Plan:
  """What validation derived from the config: arms, prompt sets, the step budget, the
  run's folders and every stage's config."""
  config: ml_collections.ConfigDict
  dirs: layout.ExperimentDir
  arms: dict[str, dict]                 # name -> {"kind", "description", "strategy"}
  prompt_sets: dict[str, list[dict]]    # "train", "eval", or a mode's own set
  prompt_stats: dict[str, dict]
  train_steps: int
  modes: dict[str, dict]                # enabled evaluation modes, plain dicts
  stages: StageConfigs

  @property
  def workdir(self) -> str:
    return self.dirs.root

  def mode_prompts(self, mode: str) -> str:
    """The prompt set a mode answers: its own, or the shared evaluation set."""
    return mode_prompt_set(mode, self.modes[mode])

  @property
  def trained_arms(self) -> list[str]:
    return [a for a, v in self.arms.items() if v["kind"] != "base"]


# --------------------------------------------------------------------------- validation

def mode_prompt_set(name: str, mode: dict) -> str:
  """The prompt set a mode answers: its own (its own file, or the first `limit`
  evaluation prompts), or the shared evaluation set."""
  return name if mode["prompts"] != "eval" or mode.get("limit") else "eval"


def fail(message: str):
  raise ExperimentConfigError(message)


def _check_name(kind: str, name: str) -> None:
  if not _NAME.match(name):
    fail(f"{kind} name {name!r} must be letters, digits, '_', '-' or '.' (it names a folder)")


def _load_set(spec: dict, fraction: float, salt: str, what: str):
  from ai_jax.data import prompts as prompts_lib
  try:
    return prompts_lib.load_prompt_set(
        spec["path"], limit=spec.get("limit") or None, split=spec.get("split") or None,
        held_out_fraction=fraction, salt=salt, field=spec.get("field") or None)
  except (FileNotFoundError, ValueError) as e:
    fail(f"config.{what}: {e}")


def _arms(config) -> dict[str, dict]:
  from ai_jax.selection.strategies import from_config, to_config
  from ai_jax.stages.select import arms_from_config
  arms = {"base": {"kind": "base", "strategy": None,
                   "description": "the untuned student (no fine-tuning)"}}
  if not config.arms:
    fail("config.arms is empty: name at least one targeted arm, e.g. "
          "{'longest': {'name': 'best', 'metric': 'length_words', 'maximize': True}}")
  lowered = {}
  for name in config.arms:
    _check_name("arm", name)
    if name.lower() in ("base", *BASELINE_ARMS):
      fail(f"arm name {name!r} collides with the baseline arm {name.lower()!r} ('base', "
            "'random' and 'first' are reserved); rename it")
    if name.lower() in lowered:
      fail(f"arm names {name!r} and {lowered[name.lower()]!r} collide (arm names are "
            "folders, compared ignoring case); rename one")
    lowered[name.lower()] = name
    try:
      from_config(config.arms[name])
    except ValueError as e:
      fail(f"config.arms.{name}: {e}")
  try:
    strategies = arms_from_config(select_config(config))
  except ValueError as e:
    fail(f"config.arms: {e}")
  for name, strategy in strategies.items():
    kind = "baseline" if name in BASELINE_ARMS else "targeted"
    spec = to_config(strategy).to_dict()
    arms[name] = {"kind": kind, "strategy": spec, "description": _describe(name, spec)}
  return arms


def _describe(name: str, spec: dict) -> str:
  if name == "random":
    return "a uniformly random sample per prompt"
  if name == "first":
    return "the first sample per prompt (what k=1 sampling would give)"
  if spec.get("name") == "from_teachers" and isinstance(spec.get("inner"), dict):
    inner = _describe("", dict(spec["inner"]))
    return f"{inner}, among the samples of {', '.join(spec.get('teachers') or [])} only"
  metric = spec.get("metric")
  if spec.get("name") in ("best", "worst") and metric:
    best = (spec["name"] == "best") == bool(spec.get("maximize", True))
    return f"the sample with the {'highest' if best else 'lowest'} {metric} per prompt"
  return f"selection {json.dumps(spec, sort_keys=True)}"


def select_config(config) -> ml_collections.ConfigDict:
  """The select stage's config (configs/select.py's keys): the arms with the experiment's
  cut policy, the baselines, and the first k samples of each prompt."""
  exclude_cut = bool(config.select.exclude_cut)
  arms = {}
  for name, strategy in config.arms.items():
    d = strategy.to_dict() if hasattr(strategy, "to_dict") else dict(strategy)
    if bool(d.setdefault("exclude_cut", exclude_cut)) != exclude_cut:
      fail(f"config.arms.{name}.exclude_cut={d['exclude_cut']} but config.select.exclude_cut="
           f"{exclude_cut}: every arm needs the same cut policy (set config.select.exclude_cut)")
    arms[name] = d
  return ml_collections.ConfigDict({
      "strategy": {}, "arm_name": "", "arms": arms, "baselines": BASELINE_ARMS,
      "seed": config.seed, "prompts_path": "",
      "max_samples_per_prompt": int(config.select.k or config.sample.sampling.k),
      "output_dir": "",  # stage_select sets the run's own selection folder
      "ablation": {"enabled": True, "metric": config.select.ablation_metric,
                   "num_bootstrap": config.select.num_bootstrap}})


def _check_metrics(config, arms) -> None:
  from ai_jax.metrics import registry
  for where, specs in [("score.metrics", config.score.metrics),
                       ("eval.metrics", config.eval.metrics)] + [
                           (f"eval.modes.{m}.metrics", v.metrics)
                           for m, v in config.eval.modes.items() if v.metrics]:
    try:
      registry.scorers_from_specs(list(specs))
    except (ValueError, KeyError, registry.MetricError) as e:
      fail(f"config.{where}: {e}")
  scored = set(registry.scorers_from_specs(list(config.score.metrics)))
  for name, arm in arms.items():
    spec = arm["strategy"] or {}
    needed = [m for m in _metrics_in(spec) if m not in scored]
    if needed:
      fail(f"arm {name!r} selects on {needed}, which config.score.metrics does not score "
            f"(scored: {sorted(scored)})")
  ablation = config.select.ablation_metric
  if ablation and ablation not in scored:
    fail(f"config.select.ablation_metric={ablation!r} is not in config.score.metrics")
  evaluated = set(registry.scorers_from_specs(list(config.eval.metrics)))
  unknown = [m for m in config.report.metrics if m not in evaluated]
  if unknown:
    fail(f"config.report.metrics {unknown} are not in config.eval.metrics")


def _metrics_in(spec: dict) -> list[str]:
  out = [spec["metric"]] if spec.get("metric") else []
  out += list(spec.get("weights", {}) or {}) + list(spec.get("metrics", []) or [])
  if spec.get("inner"):
    out += _metrics_in(spec["inner"])
  return out


def _check_sampling(config, modes) -> None:
  from ai_jax.stages.sample import options_from_config
  if config.sample.sampling.k < 1:
    fail(f"config.sample.sampling.k must be >= 1, got {config.sample.sampling.k}")
  select_k = config.select.get("k", 0)
  if not 0 <= select_k <= config.sample.sampling.k:
    fail(f"config.select.k={select_k} must be in [1, sample.sampling.k="
          f"{config.sample.sampling.k}] (0 = all samples)")
  for name, mode in modes.items():
    if mode["k"] < 1 or mode["max_new_tokens"] < 1:
      fail(f"config.eval.modes.{name}: k and max_new_tokens must be >= 1, got "
            f"k={mode['k']}, max_new_tokens={mode['max_new_tokens']}")
    if mode["protocol"] not in ("mean", "toxicity"):
      fail(f"config.eval.modes.{name}.protocol must be 'mean' or 'toxicity', got "
            f"{mode['protocol']!r}")
  try:
    options_from_config(config.sample)
    for name in modes:
      options_from_config(eval_sample_config(config, modes[name]))
  except ValueError as e:
    fail(f"config sampling settings: {e}")


def _check_models(config) -> None:
  from ai_jax import loading
  if not config.teachers:
    fail("config.teachers is empty: name at least one teacher ({'name': 'model path'})")
  for name, path in list(config.teachers.items()) + [("student", config.student.path)]:
    _check_name("teacher", name)
    try:
      loading.resolve_model_path(path or None)
    except (FileNotFoundError, ValueError) as e:
      fail(f"model {name!r}: {e}")


def _check_profile(config) -> None:
  """The profile's suites and their data, before any compute."""
  from ai_jax.profiling import suite_run
  from ai_jax.stages import profile
  try:
    profile.check_data(suite_run.ProfileOptions.from_config(config.profile))
  except (ValueError, FileNotFoundError) as e:
    fail(f"config.profile: {e}")


def plan(config, workdir: str) -> Plan:
  """Validates everything cheap (no weights, no compiling) and derives the run's plan."""
  from ai_jax.data.splits import normalise_text, prompt_text
  _check_governed(config)
  if not 0 <= config.host.index < config.host.num_hosts:
    fail(f"config.host.index={config.host.index} must be in [0, config.host.num_hosts="
         f"{config.host.num_hosts})")
  _check_models(config)
  arms = _arms(config)
  _check_metrics(config, arms)
  modes = {name: {"limit": 0, **m.to_dict()} for name, m in config.eval.modes.items()
           if m.enabled}
  _check_sampling(config, modes)
  _check_profile(config)
  tb = config.train.train
  if tb.batch_size < 1 or tb.batch_size % max(1, tb.grad_accum_steps):
    fail(f"config.train.train.batch_size={tb.batch_size} must be a positive multiple of "
          f"grad_accum_steps={tb.grad_accum_steps}")
  fraction, salt = config.prompts.held_out_fraction, config.prompts.split_salt
  sets = {"train": _load_set(config.prompts.train, fraction, salt, "prompts.train"),
          "eval": _load_set(config.prompts.eval, fraction, salt, "prompts.eval")}
  for name, mode in modes.items():
    if name in ("train", "eval"):
      fail(f"config.eval.modes.{name}: 'train' and 'eval' name prompt sets; rename the mode")
    if mode_prompt_set(name, mode) == "eval":
      continue
    if mode["prompts"] != "eval":
      sets[name] = _load_set({"path": mode["prompts"], "limit": mode.get("limit", 0)},
                             fraction, salt, f"eval.modes.{name}.prompts")
    else:  # the first `limit` evaluation prompts
      from ai_jax.data.prompts import PromptSet
      sets[name] = PromptSet(sets["eval"][:int(mode["limit"])],
                             {"source": "prompts.eval", "limit": int(mode["limit"])})
  stats = {k: dict(getattr(v, "stats", {})) for k, v in sets.items()}
  # Evaluation prompts are never training prompts, whatever the files say.
  seen = {normalise_text(prompt_text(p["prompt"])) for p in sets["train"]}
  for name in [n for n in sets if n != "train"]:
    kept = [p for p in sets[name] if normalise_text(prompt_text(p["prompt"])) not in seen]
    stats[name]["dropped_as_training_prompts"] = len(sets[name]) - len(kept)
    sets[name] = kept
    if not kept:
      fail(f"evaluation prompt set {name!r} is empty after removing training prompts")
  steps = int(tb.steps or math.ceil(tb.epochs * len(sets["train"]) / tb.batch_size))
  dirs = layout.ExperimentDir(workdir, config.shared_dir, int(config.host.index),
                              int(config.host.num_hosts))
  return Plan(config, dirs, arms, sets, stats, steps, modes,
              resolve_stages(config, dirs, modes, steps))


def copy_config(config) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(config.to_dict())


def _host(config) -> ml_collections.ConfigDict:
  return copy_config(config.host)


def _prompts(path: str, **spec) -> ml_collections.ConfigDict:
  """A stage's prompts section for a prompt file the experiment wrote (no split, no limit:
  the plan already applied them)."""
  return ml_collections.ConfigDict({"path": path, "limit": 0, "field": "", "split": "",
                                    "held_out_fraction": 0.1, "split_salt": "", **spec})


def _score_config(config, metrics, host: ml_collections.ConfigDict
                  ) -> ml_collections.ConfigDict:
  c = copy_config(config.score)
  c.metrics = tuple(metrics)
  # The student's tokenizer for every arm and teacher, named by the configured path (not
  # a converted copy, whose path differs between hosts).
  c.tokenizer = config.student.path or "model"
  c.prompts_path = ""  # the prompts each folder's sample_config.json names
  c.host = host
  return c


def _one_host() -> ml_collections.ConfigDict:
  # A host trains and evaluates its own students alone, on every evaluation prompt.
  return ml_collections.ConfigDict({"index": 0, "num_hosts": 1})


def resolve_stages(config, dirs: layout.ExperimentDir, modes: dict, steps: int
                   ) -> StageConfigs:
  """Every stage config of the run, from the experiment config alone."""
  sample = {}
  for teacher, path in config.teachers.items():
    c = copy_config(config.sample)
    c.model.path, c.model.name = path, teacher
    c.prompts = _prompts(dirs.prompts("train"))
    c.host = _host(config)  # a host's share of the prompts
    sample[teacher] = c
  train = copy_config(config.train)
  train.model.path, train.data.path, train.seed = config.student.path, "", config.seed
  train.train.steps = steps
  train.export = ml_collections.ConfigDict({"hf": True})
  train.checkpoint.keep = 1  # only the newest is needed to resume
  eval_sample, eval_score = {}, {}
  for name, mode in modes.items():
    c = eval_sample_config(config, mode)
    c.prompts = _prompts(dirs.prompts(mode_prompt_set(name, mode)))
    eval_sample[name] = c
    eval_score[name] = _score_config(config, mode["metrics"] or config.eval.metrics,
                                     _one_host())
  report = {"title": f"Active inheritance ({config.name})",
            "num_bootstrap": int(config.report.num_bootstrap),
            "confidence": float(config.report.confidence), "seed": int(config.seed),
            "metrics": list(config.report.metrics),
            "toxicity_threshold": float(config.eval.toxicity_threshold)}
  profile = copy_config(config.profile)
  profile.model.path = ""  # each student's export (stage_profile)
  return StageConfigs(sample=sample, teacher_score=_score_config(config, config.score.metrics,
                                                            _host(config)),
                      select=select_config(config), train=train, eval_sample=eval_sample,
                      eval_score=eval_score, report=report,
                      keep_checkpoints=bool(config.keep_checkpoints), profile=profile)


def eval_sample_config(config, mode: dict) -> ml_collections.ConfigDict:
  """The sample config of an evaluation mode: the teacher's model settings, the mode's
  decoding; model path and name are set per student by the evaluate stage."""
  c = copy_config(config.sample)
  c.model = ml_collections.ConfigDict({"path": "", "name": "", "dtype": config.sample.model.dtype})
  c.prompts = _prompts("")
  c.host = _one_host()
  s = c.sampling
  s.k, s.max_new_tokens = int(mode["k"]), int(mode["max_new_tokens"])
  s.temperature, s.top_p, s.top_k = float(mode["temperature"]), float(mode["top_p"]), 0
  # The evaluation's own seed, not the experiment's: students of different seeds (a sweep)
  # then answer with the same randomness, and the untuned student is evaluated once.
  s.seed, s.batch_size, s.too_long = config.eval.get("seed", 0), config.eval.batch_size, "skip"
  return c
