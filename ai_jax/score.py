r"""Score every sample record of a run with the configured metrics.

  python -m ai_jax.score --config configs/score.py --workdir DIR
  python -m ai_jax.score --config configs/score.py:smoke --workdir DIR \
      --config.metrics="('length_words', 'mtld', 'tox=toxicity_offline')"

A command line only: the stage is ai_jax.stages.score.run (its docstring has the
contract: score records, metrics.json, resume, fingerprints).
"""

if __name__ == "__main__":
  from ai_jax import cli
  from ai_jax.stages import score
  cli.run_stage(score.run, "--config configs/score.py --workdir /tmp/run",
                help_config="Scoring config file.", hide=("first_failures",))
