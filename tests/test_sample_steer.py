"""STEER through the sample stage (sampling.decoder = "steer"): the expert, base and
negative-prompt streams wired in that order, the pool's draws keyed so that a resumed,
re-batched or extended run gets the same samples, the settings in the fingerprint, and the
bad inputs refused before any model loads."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from ai_jax import loading, models
from ai_jax.sampling import steer
from ai_jax.stages import sample as sample_stage
from ai_jax.store import fingerprint as fingerprint_lib
from ai_jax.store.records import iter_records
from conftest import TINY_STUDENT
from configs import sample as sample_config

NUM_REAL = 6


@pytest.fixture(scope="module")
def steer_setup(tmp_path_factory, tiny_student_dir):
  """(expert dir, base dir, real-examples file, prompts file): two tiny random Llamas with
  SmolLM2's tokenizer, peaked so that greedy decisions are clear."""
  root = tmp_path_factory.mktemp("steer")
  tokenizer, source = loading.load_tokenizer(tiny_student_dir)
  dirs = []
  for name, seed in (("expert", 11), ("base", 12)):
    params = models.init_params(TINY_STUDENT, seed=seed)
    params = {**params, "final_norm": {"scale": params["final_norm"]["scale"] * 30.0}}
    path = str(root / name)
    loading.export_hf(loading.LoadedModel(config=TINY_STUDENT, params=params,
                                          tokenizer=tokenizer, mesh=None, source=source), path)
    dirs.append(path)
  real = root / "real.jsonl"
  real.write_text("".join(json.dumps({"prompt_id": f"r{i}", "prompt": f"real example {i}"})
                          + "\n" for i in range(NUM_REAL)))
  prompts = root / "prompts.jsonl"
  prompts.write_text("".join(json.dumps({"prompt_id": f"p{i}", "prompt": f"Write item {i}."})
                             + "\n" for i in range(5)))
  return dirs[0], dirs[1], str(real), str(prompts)


def _config(setup, **sampling):
  expert, base, real, prompts = setup
  c = sample_config.get_config("smoke")
  c.model.path = expert
  c.mesh_shape = (1, 1)
  c.prompts.path = prompts
  c.prompts.limit = 0
  c.sampling.decoder = "steer"
  c.sampling.max_new_tokens = 6
  c.sampling.temperature = 1.0
  c.sampling.top_k = 10
  c.sampling.batch_size = 4
  c.steer.base_path = base
  c.steer.real_path = real
  c.steer.num_negatives = 3
  c.steer.round_prompts = 2
  for k, v in sampling.items():
    section, key = k.split("__")
    c[section][key] = v
  return c


def _records(workdir):
  return sorted((r["prompt_id"], r["sample_index"], r["text"], tuple(r["steer_negatives"]))
                for r in iter_records(os.path.join(workdir, "samples")))


def test_resumed_rebatched_and_extended_runs_draw_the_same_samples(steer_setup, tmp_path):
  whole = str(tmp_path / "whole")
  sample_stage.run(_config(steer_setup), whole)
  want = _records(whole)
  assert len(want) == 10
  # Round 0 (p0, p1) draws from the real examples alone; later rounds also from the
  # samples of earlier rounds with sample_index <= their own.
  for prompt_id, j, _, negatives in want:
    assert len(negatives) == 3 and len(set(negatives)) == 3
    synthetic = [n for n in negatives if not n.startswith("real:")]
    if prompt_id in ("p0", "p1"):
      assert not synthetic
    for n in synthetic:
      other, other_j = n.split("/")
      assert int(other[1:]) < 2 * (int(prompt_id[1:]) // 2) and int(other_j) <= j
  assert any(not n.startswith("real:") for *_, negs in want for n in negs)

  # The same samples from k=1 on 3 prompts in batches of 1, then k=2 on all 5 in batches of 3.
  pieces = str(tmp_path / "pieces")
  sample_stage.run(_config(steer_setup, sampling__k=1, sampling__batch_size=1,
                           prompts__limit=3), pieces)
  sample_stage.run(_config(steer_setup, sampling__batch_size=3), pieces)
  assert _records(pieces) == want

  fields = json.load(open(os.path.join(whole, "samples",
                                       "fingerprint.expert.json")))["fields"]["decoder"]
  assert (fields["name"], fields["gamma"], fields["eta"], fields["num_negatives"]) == (
      "steer", 0.2, 0.6, 3)
  assert fields["real"]["num_examples"] == NUM_REAL
  with pytest.raises(fingerprint_lib.FingerprintMismatch, match="decoder.eta"):
    sample_stage.run(_config(steer_setup, steer__eta=0.3), whole)


def test_streams_are_expert_base_negative_in_that_order(steer_setup, tmp_path):
  """Greedy STEER through the stage equals the full-recompute reference run on the stage's
  own token ids (the prompt's chat rendering, the recorded negatives' rendering)."""
  from steer_reference import steer_greedy
  workdir = str(tmp_path / "greedy")
  c = _config(steer_setup, sampling__temperature=0.0, sampling__top_k=0, sampling__k=1,
              prompts__limit=1, steer__gamma=0.5)
  sample_stage.run(c, workdir)
  (rec,) = list(iter_records(os.path.join(workdir, "samples")))
  expert = loading.load_model(steer_setup[0], mesh_shape=None)
  base = loading.load_model(steer_setup[1], mesh_shape=None)
  tok = expert.tokenizer
  real = dict(steer.load_real(steer.settings_from_config(c)))
  negative = "\n\n".join(real[n] for n in rec["steer_negatives"])
  want = steer_greedy(expert.params, base.params, expert.config,
                      tok.encode_chat("Write item 0."), tok.encode_chat(negative), gamma=0.5,
                      eta=0.6, max_new_tokens=6, stop_ids=tuple(tok.stop_ids))
  assert rec["text"] == tok.decode(want)
  # gamma = eta = 0 is the expert's plain greedy decoding.
  plain = str(tmp_path / "plain")
  c0 = _config(steer_setup, sampling__temperature=0.0, sampling__top_k=0, sampling__k=1,
               prompts__limit=1, steer__gamma=0.0, steer__eta=0.0)
  sample_stage.run(c0, plain)
  c0.sampling.decoder = "plain"
  c0.steer = sample_config.get_config().steer
  plain_dir = str(tmp_path / "plain_decoder")
  sample_stage.run(c0, plain_dir)
  texts = [[r["text"] for r in iter_records(os.path.join(d, "samples"))]
           for d in (plain, plain_dir)]
  assert texts[0] == texts[1]


@pytest.mark.parametrize("change, message", [
    ({"steer__gamma": -0.1}, "steer.gamma must be a number >= 0"),
    ({"steer__eta": float("nan")}, "steer.eta must be a number >= 0"),
    ({"steer__num_negatives": NUM_REAL + 1}, "steer.num_negatives=7 is larger than the pool"),
    ({"steer__base_path": ""}, "steer.base_path is empty"),
    ({"steer__negative_template": "no placeholder"}, "must contain {examples}"),
    ({"sampling__decoder": "contrastive"}, "sampling.decoder='contrastive'"),
])
def test_bad_settings_stop_before_any_model_loads(steer_setup, tmp_path, monkeypatch, change,
                                                  message):
  monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("a model loaded"))
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("{", r"\{")
                     .replace("}", r"\}").replace("[", r"\[")):
    sample_stage.run(_config(steer_setup, **change), str(tmp_path / "run"))


def test_empty_real_set_and_other_tokenizer_are_refused_before_loading(steer_setup, tmp_path,
                                                                       monkeypatch):
  monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("a model loaded"))
  empty = tmp_path / "empty.jsonl"
  empty.write_text("")
  with pytest.raises(Exception, match="empty|no examples|no prompts|no rows"):
    sample_stage.run(_config(steer_setup, steer__real_path=str(empty)), str(tmp_path / "a"))
  # A base model whose tokenizer has another end-of-sequence token.
  other = str(tmp_path / "other_base")
  shutil.copytree(steer_setup[1], other)
  with open(os.path.join(other, "tokenizer_config.json")) as f:
    cfg = json.load(f)
  cfg["eos_token"] = "<|im_start|>"
  with open(os.path.join(other, "tokenizer_config.json"), "w") as f:
    json.dump(cfg, f)
  with pytest.raises(ValueError, match="different tokenizers"):
    sample_stage.run(_config(steer_setup, steer__base_path=other), str(tmp_path / "b"))


def test_steer_keys_under_the_plain_decoder_are_refused():
  c = sample_config.get_config("smoke")
  c.steer.gamma = 0.5
  with pytest.raises(ValueError, match=r"steer\.gamma set but sampling\.decoder is 'plain'"):
    sample_stage.settings(c)


def test_config_defaults_are_the_librarys():
  assert sample_config.get_config().steer.to_dict() == steer.default_block()


def test_pool_draws_depend_only_on_seed_prompt_sample_and_pool():
  pool = steer.NegativePool(real=tuple((f"real:{i}", f"r{i}") for i in range(5)),
                            synthetic=(("p0", 0, "a"), ("p0", 1, "b"), ("p1", 0, "c")))
  assert [n for n, _ in pool.candidates(0)][-2:] == ["p0/0", "p1/0"]
  assert len(pool.candidates(1)) == 8
  draws = {tuple(n for n, _ in pool.draw(0, "px", j, 4)) for j in range(6)}
  assert len(draws) > 1  # different samples, different negatives
  assert pool.draw(3, "px", 2, 4) == pool.draw(3, "px", 2, 4)
  assert pool.draw(3, "px", 2, 4) != pool.draw(4, "px", 2, 4)
  assert all(len(set(pool.draw(s, "q", 0, 7))) == 7 for s in range(5))
  assert np.unique([n for n, _ in pool.draw(0, "q", 1, 8)]).size == 8
