"""Facts about the machine a benchmark ran on (no jax import, so any process can call it)."""

from __future__ import annotations

import platform
import subprocess


def cpu_model() -> str:
  """lscpu's model name (platform.processor() is often empty on Linux)."""
  cpu = platform.processor() or ""
  try:
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
      if line.startswith("Model name:"):
        cpu = line.split(":", 1)[1].strip()
  except OSError:
    pass
  return cpu
