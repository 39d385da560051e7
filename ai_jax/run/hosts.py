"""Which share of a run this host owns in a multi-host run (config.host).

Every host appends only to its own record shards (writer "h<index>"), and takes the
prompts whose stable hash falls to it (ai_jax.data.splits.host_shard), so hosts never
write the same file and together cover every prompt once.
"""

from __future__ import annotations


def host_of(config) -> tuple[int, int]:
  """(this host's index, number of hosts) from config.host, (0, 1) when absent."""
  host = config.get("host", None)
  if not host:
    return 0, 1
  index, count = int(host.get("index", 0)), int(host.get("num_hosts", 1))
  if not 0 <= index < count:
    raise ValueError(f"config.host.index={index} must be in [0, num_hosts={count})")
  return index, count


def writer_name(index: int, count: int) -> str:
  """One writer per host: each host appends only to its own shard files."""
  return f"h{index:03d}" if count > 1 else ""


def owner(prompt_id: str, count: int) -> int:
  """The index of the host (of count) that samples and scores prompt_id."""
  from ai_jax.data.splits import host_shard
  return host_shard(prompt_id, count) if count > 1 else 0
