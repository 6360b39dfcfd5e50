"""Threads in coding: every convolution on one torch thread, the cores shared by cutting the work.

    one_thread()          torch on one thread inside the block (whatever the caller's count), as before after
    coding_threads()      how many threads coding may use: the caller's torch thread count
    parallel(fn, items, at_most)   [fn(item) ...] in up to coding_threads() (and at_most) Python threads, each
                                   on one torch thread

A convolution's float result depends on how its work is split across threads, and a change in the last bit can
move a pixel across a rounding boundary: decoding must not depend on the caller's thread count. So coding runs
every convolution on one thread, and uses the cores by cutting the work itself into pieces that depend on the
image alone, never on the machine (tiles of the transforms, learned.py; output channels of the integer networks,
whose sums are exact in any order, nn/integer.py): the pieces give the same numbers whether they run one after
another or side by side, so the thread count changes only the speed.
"""
from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

MAX_THREADS = 8  # threads one parallel() call starts at most: beyond, pieces get too small to pay
_lock = threading.Lock()
_blocks = [0, 1]  # [one_thread blocks open now (any Python thread), torch's thread count before the first]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread inside the block (coding must not depend on the thread count), as before after.
    Whether torch's thread count is one setting per process or per OS thread depends on its build and on the
    thread, so every block sets it in its own thread, and only the last block to close (in any thread) restores
    the count from before the first: a restore while another thread codes could change that thread's count.
    The block also turns off CPU autocast, a setting of each thread too: coding computes in the weights' own
    precision, in the caller's thread and in parallel's alike."""
    with _lock:
        if _blocks[0] == 0:
            _blocks[1] = torch.get_num_threads()
        _blocks[0] += 1
        torch.set_num_threads(1)
    try:
        with torch.autocast("cpu", enabled=False):
            yield
    finally:
        with _lock:
            _blocks[0] -= 1
            if _blocks[0] == 0:
                torch.set_num_threads(_blocks[1])


def coding_threads() -> int:
    """The threads coding may use: torch's thread count from before the open one_thread blocks (a worker
    process of an evaluation is set to 1, and then its pieces run one after another: the workers already share
    the cores)."""
    with _lock:
        return max(1, _blocks[1] if _blocks[0] else torch.get_num_threads())


def parallel(fn: Callable[[T], R], items: Iterable[T], at_most: int = MAX_THREADS) -> list[R]:
    """[fn(item) for item in items], in up to coding_threads() Python threads and at most `at_most` (torch
    releases the GIL in its operations), each inside one_thread() and in the caller's grad mode (thread-local
    in torch). A caller whose pieces are large in memory passes a small `at_most`: as many pieces as threads are
    held at once."""
    items = list(items)
    grad = torch.is_grad_enabled()

    def task(item: T) -> R:
        with one_thread(), torch.set_grad_enabled(grad):
            return fn(item)

    workers = min(len(items), coding_threads(), at_most)
    if workers <= 1:
        return [task(item) for item in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(task, items))
