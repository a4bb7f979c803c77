"""Time-bounded verification: math-verify runs in worker processes that are killed when stuck.

math-verify's own timeout uses ``signal.alarm``, which only works in the main thread of the main
interpreter. We switch it off and bound the time from outside instead: every item is sent to a
worker process (``spawn`` start method, safe next to torch threads); if no answer comes back
within ``timeout_s`` the worker is killed (SIGKILL) and replaced by a warm spare process while a
new spare starts in the background. This works from any thread. Only when timeouts come faster
than a start-up (Python + sympy import, ~1 s) does an item wait for its worker to start, before
its clock starts. Scripts that create a RewardScorer must guard their entry point with
``if __name__ == "__main__":`` (a ``spawn`` requirement).
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

_STARTUP_TIMEOUT_S = 120.0
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """The outcome of one item: ``status`` is "ok" (``correct`` is meaningful), "timeout"
    (worker killed after the bound) or "error" (the check raised or the worker died)."""

    correct: bool
    status: Literal["ok", "timeout", "error"]
    seconds: float
    detail: str = ""

    @property
    def reward(self) -> float:
        return 1.0 if self.correct else 0.0


def _limit_memory(extra_mb: int) -> None:
    """Cap the address space at its current size + ``extra_mb`` (the current size includes
    whatever the parent's main module imported during the spawn, e.g. torch)."""
    import resource

    try:
        with open("/proc/self/statm") as statm:
            current = int(statm.read().split()[0]) * resource.getpagesize()
    except OSError:  # not Linux: no reliable current size, so no cap
        return
    limit = current + extra_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def _worker_main(conn, memory_limit_mb: int | None) -> None:
    from selfdistill.rewards.check import check_answer

    check_answer("\\boxed{1}", "1/1")  # warm up sympy / latex2sympy before reporting ready
    if memory_limit_mb is not None:
        _limit_memory(memory_limit_mb)
    conn.send("ready")
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        try:
            conn.send(("ok", check_answer(*task)))
        except BaseException as error:  # noqa: BLE001 - reported to the parent, never raised
            conn.send(("error", f"{type(error).__name__}: {str(error)[:200]}"))


class _Worker:
    """One killable verification process."""

    def __init__(self, memory_limit_mb: int | None) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_worker_main, args=(child, memory_limit_mb), daemon=True
        )
        self.process.start()
        child.close()
        self.ready = False

    def _wait_ready(self) -> None:
        if not self.conn.poll(_STARTUP_TIMEOUT_S) or self.conn.recv() != "ready":
            raise RuntimeError("a math-verify worker process did not start")
        self.ready = True

    def run(self, text: str, gold: str, timeout_s: float, answer_format: str = "boxed") -> Verdict:
        if not self.ready:
            self._wait_ready()
        start = time.monotonic()
        try:
            self.conn.send((text, gold, answer_format))
            if self.conn.poll(timeout_s):
                status, value = self.conn.recv()
                seconds = time.monotonic() - start
                if status == "ok":
                    return Verdict(bool(value), "ok", seconds)
                return Verdict(False, "error", seconds, str(value))
        except (EOFError, OSError) as error:  # the worker died (segfault, memory limit kill)
            return Verdict(False, "error", time.monotonic() - start, f"worker died: {error}")
        return Verdict(False, "timeout", time.monotonic() - start, f"over {timeout_s} s")

    @property
    def alive(self) -> bool:
        return self.process.is_alive() and not self.conn.closed

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


def _kill_all(workers: list[_Worker]) -> None:
    for worker in workers:
        worker.kill()


class RewardScorer:
    """Binary math rewards with a hard per-item time bound.

    Args:
        timeout_s: seconds allowed per item (worker start-up excluded).
        workers: number of verification processes (items are checked in parallel).
        memory_limit_mb: address space each worker may add after start-up, or None for no cap
            (a runaway sympy computation then raises MemoryError instead of exhausting RAM).
        answer_format: "boxed" (default) or "boxed_or_last_number" (see ``extract_answer``).

    Use as a context manager (or call ``close``) to stop the workers.
    """

    def __init__(
        self, timeout_s: float = 5.0, workers: int = 1, memory_limit_mb: int | None = 2048,
        answer_format: str = "boxed",
    ) -> None:
        from selfdistill.rewards.extract import ANSWER_FORMATS

        if answer_format not in ANSWER_FORMATS:
            raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
        self.answer_format = answer_format
        if timeout_s <= 0 or workers < 1:
            raise ValueError(f"RewardScorer needs timeout_s > 0 and workers >= 1, got "
                             f"timeout_s={timeout_s}, workers={workers}")
        self.timeout_s = timeout_s
        self.memory_limit_mb = memory_limit_mb
        # one spare process stays warm so that a killed worker is replaced without start-up delay
        self._all: list[_Worker] = [_Worker(memory_limit_mb) for _ in range(workers + 1)]
        self._spare: _Worker | None = self._all[-1]
        self._idle: queue.Queue[_Worker] = queue.Queue()
        for worker in self._all[:-1]:
            self._idle.put(worker)
        self._executor = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
        self._finalizer = weakref.finalize(self, _kill_all, self._all)
        self._lock = threading.Lock()
        self._closed = False

    def check(self, text: str, gold: str, *, timeout_s: float | None = None) -> Verdict:
        """Verify one response against one gold answer within the time bound."""
        if self._closed:
            raise RuntimeError("this RewardScorer is closed")
        worker = self._idle.get()
        try:
            verdict = worker.run(
                text, gold, self.timeout_s if timeout_s is None else timeout_s, self.answer_format
            )
            if verdict.status == "error":
                logger.warning("reward check failed (scored 0): %s", verdict.detail)
            if verdict.status != "ok" or not worker.alive:
                worker = self._replace(worker)
        finally:
            self._idle.put(worker)
        return verdict

    def _replace(self, worker: _Worker) -> _Worker:
        """Kill ``worker``; hand out the warm spare (or a new worker) and warm a new spare."""
        worker.kill()
        with self._lock:
            self._all.remove(worker)
            fresh, self._spare = self._spare, None
            if fresh is None:
                fresh = _Worker(self.memory_limit_mb)
                self._all.append(fresh)
            if not self._closed:
                self._spare = _Worker(self.memory_limit_mb)
                self._all.append(self._spare)
        return fresh

    def score_detailed(self, texts: Sequence[str], golds: Sequence[str]) -> list[Verdict]:
        """One Verdict per (response text, gold answer) pair, in order."""
        if len(texts) != len(golds):
            raise ValueError(f"{len(texts)} texts but {len(golds)} gold answers")
        for i, gold in enumerate(golds):
            if not isinstance(gold, str):
                raise ValueError(
                    f"gold answer of item {i} is {gold!r}, not a string; rows without an answer "
                    "cannot be rewarded (filter them or map an answer column)"
                )
        if self._executor is None:
            return [self.check(text, gold) for text, gold in zip(texts, golds)]
        return list(self._executor.map(self.check, texts, golds))

    def score(self, texts: Sequence[str], golds: Sequence[str]) -> list[float]:
        """Rewards 1.0 (correct) / 0.0 (wrong, no answer, timeout or error), in order."""
        return [verdict.reward for verdict in self.score_detailed(texts, golds)]

    def close(self) -> None:
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._finalizer()

    def __enter__(self) -> RewardScorer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_shared: RewardScorer | None = None
_shared_lock = threading.Lock()


def verify(response_text: str, gold: str, *, timeout_s: float = 5.0) -> bool:
    """True when the last boxed answer of ``response_text`` matches ``gold`` (exact string match,
    then math-verify's symbolic equivalence), decided within ``timeout_s`` seconds (False on
    timeout). Uses one shared worker process; safe to call from any thread."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = RewardScorer(timeout_s=timeout_s, workers=1)
        return _shared.check(response_text, gold, timeout_s=timeout_s).correct
