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
