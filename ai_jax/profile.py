r"""Profile one model: bias (StereoSet, CrowS-Pairs, BBQ), calibration and accuracy
(OpenBookQA, PIQA, HellaSwag, MMLU) by batched log-likelihood.

  python -m ai_jax.profile --config configs/profile.py --workdir runs/profile
  python -m ai_jax.profile --config configs/profile.py:smoke --workdir DIR \
      --config.model.path=DIR/students/<id>/export/hf

A command line only: the stage is ai_jax.stages.profile.run.
"""

if __name__ == "__main__":
  from ai_jax import cli
  from ai_jax.stages import profile
  cli.run_stage(profile.run, "--config configs/profile.py --workdir /tmp/profile",
                help_config="Profile config file.", hide=("suites",))
