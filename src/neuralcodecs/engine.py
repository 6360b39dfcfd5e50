"""Ray as the scale-out engine: the same jobs as the local process pool, as Ray tasks on a cluster.

    ray_map(fn, items, workers, address) -> (item, fn(item)) pairs, in the order tasks finish

With no address a local Ray instance is started (and stopped) for the call, with `workers` CPUs; with one
("auto" on a cluster node, or "ray://HEAD:10001" from outside) the cluster's nodes run the tasks. Each task
takes one CPU and runs torch on one thread, as a worker of the local pool does. The nodes need neuralcodecs
installed and the inputs readable at the same paths (a shared filesystem). Ray is an optional extra:
`pip install 'neuralcodecs[ray]'`.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")


def one_thread_worker() -> None:
    """Set up a worker process (a local pool's or a Ray task's): workers already run in parallel, and torch's
    own threads would oversubscribe the cores and distort the timings."""
    # for the libraries this process has not loaded yet (OpenMP reads it once, at load); torch's own pool is
    # set below, as it may be loaded already
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def one_thread_call(fn: Callable[[T], Any], item: T) -> Any:
    """fn(item) in a worker set up by one_thread_worker."""
    one_thread_worker()
    return fn(item)


def ray_map(fn: Callable[[T], Any], items: Iterable[T], workers: int = 1, address: str | None = None
            ) -> Iterator[tuple[T, Any]]:
    try:
        import ray
    except ImportError as e:
        raise ImportError("the ray engine needs Ray: pip install 'neuralcodecs[ray]'") from e
    started = not ray.is_initialized()
    if started:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # Ray's usage report would try to reach the internet
        ray.init(address=address, num_cpus=None if address else max(1, workers), include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    pending: dict = {}
    try:
        task = ray.remote(num_cpus=1)(one_thread_call)
        fn_ref = ray.put(fn)  # stored once (a batch job's function holds its codec and weights), not per task
        for item in items:
            pending[task.remote(fn_ref, item)] = item
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            yield pending.pop(ready[0]), ray.get(ready[0])
    finally:
        # the caller stopped early, or a task failed: the tasks left would run on for nothing (on a cluster
        # that outlives this call)
        try:
            for ref in pending:
                ray.cancel(ref, force=True)
        finally:
            if started:
                ray.shutdown()
