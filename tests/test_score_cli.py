"""`python -m ai_jax.score`: shards in, aligned score shards out, resume, bad input."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from ai_jax.stages import score as score_cli
from configs import score as score_config
from conftest import requires_embedded, subprocess_env
from metrics_corpus import varied_texts

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _make_run(workdir, num_shards=3, per_shard=5, prompts_path="builtin:default_prompts"):
  """A run directory as ai_jax.sample leaves it, with texts from the test corpus."""
  samples = workdir / "samples"
  samples.mkdir(parents=True)
  texts = iter(varied_texts(num_shards * per_shard + 5))
  n = 0
  for s in range(num_shards):
    with open(samples / f"shard-{s:05d}.jsonl", "w", encoding="utf-8") as f:
      for _ in range(per_shard):
        rec = {"prompt_id": f"default-{n // 2:03d}", "sample_index": n % 2, "text": next(texts),
               "num_tokens": 10, "finish_reason": "stop"}
        f.write(json.dumps(rec) + "\n")
        n += 1
  (workdir / "sample_config.json").write_text(json.dumps(
      {"model": {"path": ""}, "prompts": {"path": prompts_path}}))
  return workdir


def _config(*metrics):
  c = score_config.get_config("smoke")
  if metrics:
    c.metrics = tuple(metrics)
  return c


def _read(path):
  return [json.loads(line) for line in open(path, encoding="utf-8")]


def _scores(run):
  """Score records keyed by (prompt_id, sample_index)."""
  from ai_jax.store.records import iter_records
  return {(r["prompt_id"], r["sample_index"]): r for r in iter_records(str(run / "scores"))}


def _samples(run):
  from ai_jax.store.records import iter_records
  return list(iter_records(str(run / "samples")))


def test_cli_writes_aligned_score_shards(tmp_path):
  run = _make_run(tmp_path / "run")
  proc = subprocess.run(
      [sys.executable, "-m", "ai_jax.score", "--config", "configs/score.py:smoke",
       "--workdir", str(run)], cwd=REPO, env=subprocess_env(),
      capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "scoring" in proc.stderr and "score/s" in proc.stderr  # progress bar
  scores = _scores(run)
  samples = _samples(run)
  assert len(scores) == len(samples) == 15
  for sample in samples:
    rec = scores[(sample["prompt_id"], sample["sample_index"])]
    assert rec["length_chars"] == len(sample["text"])
    assert set(rec) == {"prompt_id", "sample_index", "score_errors",
                        *score_config.get_config("smoke").metrics}
  manifest = json.load(open(run / "scores" / "metrics.json"))
  assert manifest["columns"]["mtld"]["higher_means"]
  assert manifest["columns"]["toxicity_offline"]["version"] == "alt-profanity-check-1.9.1"
  summary = json.load(open(run / "scores" / "summary.json"))
  assert summary["columns"]["length_chars"]["rows"] == 15
  assert summary["rows_scored_now"] == 15


def test_resume_scores_only_missing_rows(tmp_path):
  run = _make_run(tmp_path / "run")
  c = _config()
  c.rows_per_append = 4
  c.records_per_shard = 6
  first = score_cli.run(c, str(run))
  assert first["rows_scored_now"] == 15
  shards = sorted((run / "scores").glob("shard-*.jsonl"))
  assert len(shards) == 3
  before = shards[0].read_text()
  # A crash mid-append: the last shard loses its last line and half of the one before.
  data = shards[-1].read_bytes()
  lines = data.split(b"\n")
  shards[-1].write_bytes(b"\n".join(lines[:-3]) + b"\n" + lines[-3][:20])
  again = score_cli.run(c, str(run))
  assert again["rows_scored_now"] == 2 and again["rows_already_scored"] == 13
  assert shards[0].read_text() == before
  assert again["columns"]["length_words"]["rows"] == 15  # summary covers every row
  assert len(_scores(run)) == 15
  # New sample records (a sampling run that grew) are scored on the next run, alone.
  with open(run / "samples" / "shard-00002.jsonl", "a") as f:
    f.write(json.dumps({"prompt_id": "extra", "sample_index": 0, "text": "More text here.",
                        "num_tokens": 3, "finish_reason": "stop"}) + "\n")
  third = score_cli.run(c, str(run))
  assert third["rows_scored_now"] == 1
  assert _scores(run)[("extra", 0)]["length_chars"] == len("More text here.")


def test_other_metrics_refuse_without_overwrite(tmp_path):
  run = _make_run(tmp_path / "run")
  score_cli.run(_config("length_words"), str(run))
  before = {p: p.read_text() for p in (run / "scores").iterdir()}
  with pytest.raises(ValueError, match="--overwrite"):
    score_cli.run(_config("length_words", "num_questions"), str(run))
  assert {p: p.read_text() for p in (run / "scores").iterdir()} == before
  out = score_cli.run(_config("length_words", "num_questions"), str(run), overwrite=True)
  assert out["rows_scored_now"] == 15
  assert all("num_questions" in r for r in _scores(run).values())


def test_unsampled_rows_and_failures_are_reported(tmp_path, monkeypatch):
  run = _make_run(tmp_path / "run", num_shards=1, per_shard=4)
  path = run / "samples" / "shard-00000.jsonl"
  rows = _read(path)
  rows[1].update(text="", num_tokens=0, finish_reason="prompt_too_long")
  rows[2]["text"] = "   "
  rows[3]["text"] = "A sentence that is certainly longer than forty characters in all."
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  (tmp_path / "fail_metric.py").write_text(textwrap.dedent('''
      def picky(text):
          if len(text) > 40:
              raise ValueError("too long for me")
          return 1.0
  '''))
  monkeypatch.syspath_prepend(str(tmp_path))
  summary = score_cli.run(_config("length_chars", "mtld", "fail_metric:picky"), str(run))
  by_key = _scores(run)
  scores = [by_key[(r["prompt_id"], r["sample_index"])] for r in rows]
  assert scores[1]["length_chars"] is None
  assert scores[1]["score_errors"]["length_chars"] == "not sampled: prompt_too_long"
  assert scores[2]["length_chars"] == 3 and scores[2]["mtld"] is None
  assert scores[2]["score_errors"]["mtld"].startswith("undefined: ")
  long_rows = [i for i, r in enumerate(rows) if len(r["text"]) > 40 and i != 1]
  assert long_rows
  for i in long_rows:
    assert scores[i]["score_errors"]["picky"] == "ValueError: too long for me"
  cols = summary["columns"]
  assert cols["picky"]["failed"] == len(long_rows) + 1  # + the unsampled row
  assert cols["mtld"]["undefined"] == 1 and cols["mtld"]["failed"] == 1
  assert summary["first_failures"]


def test_prompt_reading_metric(tmp_path, monkeypatch):
  run = _make_run(tmp_path / "run", num_shards=1, per_shard=4)
  (tmp_path / "prompt_metric.py").write_text(
      "def prompt_len(text, prompt):\n    return len(prompt)\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  score_cli.run(_config("prompt_metric:prompt_len"), str(run))
  from ai_jax.data import prompts as prompts_lib
  by_id = {p["prompt_id"]: p["prompt"]
           for p in prompts_lib.read_prompts_jsonl("builtin:default_prompts")}
  for rec in _scores(run).values():
    assert rec["prompt_len"] == len(by_id[rec["prompt_id"]])


def test_bad_inputs(tmp_path):
  with pytest.raises(FileNotFoundError, match="ai_jax.sample"):
    score_cli.run(_config(), str(tmp_path / "empty"))
  run = _make_run(tmp_path / "run", num_shards=1)
  with open(run / "samples" / "shard-00000.jsonl", "a") as f:
    f.write("{not json\n")
  with pytest.raises(ValueError, match=r"shard-00000.jsonl:6"):
    score_cli.run(_config(), str(run))
  run2 = _make_run(tmp_path / "run2", num_shards=1)
  (run2 / "samples" / "shard-00000.jsonl").write_text('{"prompt_id": "a", "text": "x"}\n')
  with pytest.raises(ValueError, match="lacks"):
    score_cli.run(_config(), str(run2))
  from ai_jax.metrics import registry
  with pytest.raises(registry.MetricError, match="known metrics"):
    score_cli.run(_config("no_such_metric"), str(run2))
  assert not (run2 / "scores").exists()  # a config error writes nothing


@requires_embedded
def test_length_tokens_uses_the_sampling_models_tokenizer(tmp_path):
  from ai_jax import loading
  run = _make_run(tmp_path / "run", num_shards=1, per_shard=3)
  score_cli.run(_config("length_tokens"), str(run))
  tokenizer, source = loading.load_tokenizer()
  manifest = json.load(open(run / "scores" / "metrics.json"))
  assert manifest["tokenizer"] == source
  scores = _scores(run)
  for sample in _samples(run):
    rec = scores[(sample["prompt_id"], sample["sample_index"])]
    assert rec["length_tokens"] == len(tokenizer.encode(sample["text"], add_bos=False))
