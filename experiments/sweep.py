r"""A sweep of active-inheritance runs (k x target x seed) that shares what cells share.

  python -m experiments.sweep --config configs/sweep.py:smoke --workdir /tmp/sweep

A command line only: the sweep is ai_jax.experiment.sweep (its docstring has the layout
and the multi-host protocol).
"""


def main() -> None:
  import json
  import sys

  from absl import app, flags
  from ml_collections import config_flags

  from ai_jax import cli
  from ai_jax.experiment.sweep import GOVERNED, run
  cli.check_overrides(sys.argv[1:], GOVERNED)
  config = config_flags.DEFINE_config_file("config", None, "Sweep config file.",
                                           lock_config=True)
  workdir = flags.DEFINE_string("workdir", None, "Sweep directory (shared by all hosts).")
  distributed = flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize().")
  coordinator = flags.DEFINE_string("coordinator", None, "HOST:PORT (when not auto-detected).")
  num_hosts = flags.DEFINE_integer("num_hosts", None, "Number of hosts (processes).")
  host_index = flags.DEFINE_integer("host_index", None, "This host's index.")

  def _main(argv):
    from absl import logging
    logging.set_verbosity(logging.WARNING)  # orbax logs every save step at INFO
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if config.value is None or workdir.value is None:
      raise app.UsageError("--config and --workdir are required, e.g. --config "
                           "configs/sweep.py:smoke --workdir /tmp/sweep")
    if distributed.value:
      import jax
      jax.distributed.initialize(coordinator_address=coordinator.value,
                                 num_processes=num_hosts.value, process_id=host_index.value)
      host = (jax.process_index(), jax.process_count())
    else:
      host = (host_index.value or 0, num_hosts.value or 1)
    summary = run(config.value, workdir.value, host=host, distributed=distributed.value)
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=2))

  app.run(_main)


if __name__ == "__main__":
  main()
