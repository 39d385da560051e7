"""Errors raised while reading or writing weight files."""


class WeightsError(ValueError):
  """A weight file is missing pieces, corrupt, or does not match the config."""
