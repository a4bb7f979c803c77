"""Benchmarks by name -> examples, through ``selfdistill.data.load_examples``.

Hub benchmarks (need the network or a local Hugging Face cache):

    name     hub dataset                  split  columns used
    aime24   HuggingFaceH4/aime_2024      train  id, problem, solution, answer      (30 problems)
    aime25   math-ai/aime25               test   id, problem, answer                (30)
    hmmt25   MathArena/hmmt_feb_2025      train  problem_idx, problem, answer       (30)
    amc23    math-ai/amc23                test   id, question, answer               (40)
    math500  HuggingFaceH4/MATH-500       test   unique_id, problem, solution, answer (500)
    gsm8k    openai/gsm8k (config main)   test   question, answer ("steps #### 42")  (1319)

Offline sets (installed packages; see docs/data): ``gsm8k-100``, ``champ``, ``rg:<task>``.
Anything else is passed to ``load_examples`` unchanged: a local .jsonl/.json/.csv/.parquet file,
``hf:NAME[:CONFIG]``, or a hub id. A benchmark's name in the results is the name given here
(for files: the file stem).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from selfdistill.data.files import SUFFIXES
from selfdistill.data.load import OFFLINE_NAMES
from selfdistill.data.offline import is_offline_name
from selfdistill.paths import looks_like_path
from selfdistill.types import Example


@dataclass(frozen=True)
class HubBenchmark:
    """Where a named benchmark lives on the Hugging Face hub."""

    spec: str  # NAME[:CONFIG] as load_examples understands it
    split: str
    columns: dict[str, str] = field(default_factory=dict)  # field -> column when not inferred


BENCHMARKS: dict[str, HubBenchmark] = {
    "aime24": HubBenchmark("HuggingFaceH4/aime_2024", "train"),
    "aime25": HubBenchmark("math-ai/aime25", "test"),
    "hmmt25": HubBenchmark("MathArena/hmmt_feb_2025", "train", {"id": "problem_idx"}),
    "amc23": HubBenchmark("math-ai/amc23", "test"),
    "math500": HubBenchmark("HuggingFaceH4/MATH-500", "test"),
    "gsm8k": HubBenchmark("openai/gsm8k:main", "test"),
}


def parse_benchmarks(text: str) -> list[str]:
    """``"aime24, gsm8k-100"`` -> ``["aime24", "gsm8k-100"]`` (ValueError when empty)."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError("--benchmarks is empty: give names such as aime24,math500 or a data file")
    return names


def check_benchmark_name(name: str) -> None:
    """Refuse, before any model loads, a name that is no benchmark, offline set, existing data
    file, ``hf:`` spec or ``owner/name`` hub id; the message suggests the closest names.

    Raises:
        ValueError: an unknown name (with "did you mean"), or a data file path that does not exist.
    """
    base = name.partition("?")[0]
    if base in BENCHMARKS or is_offline_name(base) or base.startswith("hf:") or Path(base).exists():
        return
    if Path(base).suffix.lower() in SUFFIXES or looks_like_path(base):
        raise ValueError(f"benchmark file {base} does not exist (no such file in "
                         f"{Path(base).absolute().parent}); check the path")
    if "/" in base:  # owner/name: a hub dataset, fetched when the benchmarks load
        return
    known = list(BENCHMARKS) + list(OFFLINE_NAMES)
    close = difflib.get_close_matches(base, known, n=2, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ValueError(f"unknown benchmark {name!r}: {hint}Names: {', '.join(known)}, rg:<task>, a local "
                     ".jsonl/.json/.csv/.parquet file, or a hub dataset as owner/name (hf:NAME for one "
                     "without an owner)")


def benchmark_label(name: str) -> str:
    """The name results are reported under: the file stem for local files, else ``name``."""
    path = Path(name)
    return path.stem if path.suffix and path.exists() else name


def load_benchmark(name: str, *, limit: int | None = None, seed: int = 0,
                   columns: dict[str, str] | None = None, syntax: str = "any") -> list[Example]:
    """Examples of one benchmark (every row must have an answer; bad rows raise DataError).

    ``columns`` maps fields to columns as in ``load_examples`` (over a named benchmark's own
    mapping); ``syntax`` is how error hints write a mapping (``columns.MAP_SYNTAX``).
    """
    from selfdistill.data.load import load_examples

    if name in BENCHMARKS:
        bench = BENCHMARKS[name]
        return load_examples(bench.spec, split=bench.split, columns={**bench.columns, **(columns or {})} or None,
                             limit=limit, seed=seed, need_answer=True, syntax=syntax)
    return load_examples(name, limit=limit, seed=seed, need_answer=True, columns=columns or None, syntax=syntax)
