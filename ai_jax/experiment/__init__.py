"""The active-inheritance experiment (plan, stages, driver) and the sweep over its cells.

`python -m experiments.active_inheritance` and `python -m experiments.sweep` are their
command lines; a notebook calls `ai_jax.run_experiment` (or `active_inheritance.run`).
"""
