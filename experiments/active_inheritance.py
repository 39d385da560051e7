r"""Active inheritance end to end: sample -> score -> select -> train -> evaluate -> report.

  python -m experiments.active_inheritance --config configs/active_inheritance.py:smoke \
      --workdir /tmp/ai_smoke

A command line only: the experiment is ai_jax.experiment.active_inheritance (its
docstring has the run's folders and the stages), `ai_jax.run_experiment` in a notebook.
"""

if __name__ == "__main__":
  from ai_jax import cli
  from ai_jax.experiment import active_inheritance, plan
  cli.run_stage(active_inheritance.run,
                "--config configs/active_inheritance.py:smoke --workdir /tmp/ai_smoke",
                help_config="Experiment config file.",
                hide=("evaluations", "arms", "ablation", "prompt_sets"),
                governed=plan.GOVERNED)
