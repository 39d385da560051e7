"""One rounding rule for padded lengths, shared by the sampler (prompt lengths) and the
training batches (example lengths): each distinct length is a compiled shape, so lengths
round up to a few buckets."""


def bucket_length(n: int, min_bucket: int = 16, cap: int | None = None) -> int:
  """The smallest power of two >= max(n, min_bucket); at most cap, but never below n.

  >>> [bucket_length(n, 16) for n in (1, 16, 17, 33)], bucket_length(100, 16, cap=96)
  ([16, 16, 32, 64], 100)
  """
  b = 1 << (max(int(n), int(min_bucket), 1) - 1).bit_length()
  return b if cap is None else max(min(b, int(cap)), int(n))


def fine_bucket_length(n: int, min_bucket: int = 16) -> int:
  """The smallest of 2^k and 1.5 * 2^k (16, 24, 32, 48, 64, 96, ...) >= max(n, min_bucket):
  at most a third of a row is padding, for twice the shapes of bucket_length. For the
  log-likelihood scorer, where a padded token costs a full forward token and each shape
  compiles once per process.

  >>> [fine_bucket_length(n, 16) for n in (1, 17, 25, 33, 100, 130)]
  [16, 24, 32, 48, 128, 192]
  """
  b = bucket_length(n, min_bucket)
  three_quarters = 3 * b // 4
  return three_quarters if b >= 4 and three_quarters >= max(int(n), int(min_bucket)) else b
