r"""STEER end to end: data -> expert -> sample -> metrics -> report, per task.

  python -m experiments.steer --config configs/steer.py:smoke --workdir /tmp/steer_smoke \
      --config.base_path=/path/to/tiny/hf
  python -m experiments.steer --config configs/steer.py --workdir runs/steer

A command line only: the experiment is ai_jax.experiment.steer (its docstring has the
run's folders and the stages).
"""

if __name__ == "__main__":
  from ai_jax import cli
  from ai_jax.experiment import steer
  cli.run_stage(steer.run, "--config configs/steer.py:smoke --workdir /tmp/steer_smoke",
                help_config="Experiment config file.", hide=("tasks", "arms"),
                governed=steer.GOVERNED)
