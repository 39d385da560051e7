r"""Sample k completions per prompt into a crash-safe, resumable record store.

  python -m ai_jax.sample --config configs/sample.py:smoke --workdir /tmp/run
  python -m ai_jax.sample --config configs/sample.py --workdir /tmp/run --config.sampling.k=4

A command line only: the stage is ai_jax.stages.sample.run (its docstring has the
contract: records, resume, fingerprints).
"""

if __name__ == "__main__":
  from ai_jax import cli
  from ai_jax.stages import sample
  cli.run_stage(sample.run, "--config configs/sample.py:smoke --workdir /tmp/run",
                help_config="Sampling config file.")
