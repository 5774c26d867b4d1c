"""Wall-clock timing shared by the benchmark scripts."""
import time

import jax


def wall_seconds(fn, *args, repeats: int) -> list[float]:
  """Wall seconds of `repeats` calls fn(*args), each waited for, after one warm-up call."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return times
