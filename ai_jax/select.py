r"""Choose, per prompt, the sample the student learns from; write one training set per arm.

  python -m ai_jax.select --config configs/select.py --workdir DIR
  python -m ai_jax.select --config configs/select.py --workdir DIR \
      --config.strategy.metric=mtld --config.strategy.maximize=False

A command line only: the stage is ai_jax.stages.select.run (its docstring has the
contract: training sets per arm, baselines, the best-of-j ablation).
"""

if __name__ == "__main__":
  from ai_jax import cli
  from ai_jax.stages import select
  cli.run_stage(select.run, "--config configs/select.py --workdir /tmp/run",
                help_config="Selection config file.")
