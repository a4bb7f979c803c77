"""Hugging Face datasets by name (or a local dataset folder) through ``datasets.load_dataset``.

Spec: ``NAME[:CONFIG]`` (``openai/gsm8k:main``), with the split given separately. Without a
split, ``train`` is used when the dataset has one, else its only split. A folder written by
``save_to_disk`` is read with ``load_from_disk``. A failure to reach the hub becomes a
DataError that says how to use a local copy, never a stack trace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfdistill.data.errors import DataError
from selfdistill.data.rows import RawRow, RawTable

NETWORK_HINTS = ("couldn't reach", "offlinemodeisenabled", "localentrynotfound", "name or service not known",
                 "connection", "timed out", "network is unreachable", "temporary failure in name resolution")


def parse_hub_spec(spec: str) -> tuple[str, str | None]:
    """``"openai/gsm8k:main"`` -> ``("openai/gsm8k", "main")``; no colon -> config None."""
    name, _, config = spec.partition(":")
    return name, (config or None)


def load_hub(spec: str, *, split: str | None = None, limit: int | None = None,
             **kwargs: Any) -> RawTable:
    """Rows of one split of a hub dataset (or local dataset folder), numbered from 1.

    ``kwargs`` go to ``datasets.load_dataset`` (e.g. ``data_files=``).
    """
    import datasets

    name, config = parse_hub_spec(spec)
    try:
        if (Path(name) / "state.json").exists() or (Path(name) / "dataset_dict.json").exists():
            loaded = datasets.load_from_disk(name)  # a folder written by save_to_disk
            loaded = loaded[split] if split and isinstance(loaded, datasets.DatasetDict) else loaded
        else:
            loaded = datasets.load_dataset(name, config, split=split, **kwargs)
    except Exception as err:
        raise _explain(err, spec, split) from err
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        chosen = "train" if "train" in splits else (splits[0] if len(splits) == 1 else None)
        if chosen is None:
            raise DataError(f"the dataset has splits {', '.join(splits)}; choose one with --split "
                            "(or split=...)", spec)
        split, loaded = chosen, loaded[chosen]
    if limit is not None:
        loaded = loaded.select(range(min(limit, len(loaded))))
    label = f"{spec} {split}" if split else spec
    rows = [RawRow(i, dict(row)) for i, row in enumerate(loaded, start=1)]
    return RawTable(source=label, label=label, unit="row", rows=rows, columns=list(loaded.column_names),
                    id_prefix=f"{name}-{split}" if split else name)


def is_network_error(err: BaseException) -> bool:
    """True when ``err`` (or an exception it was raised from) says the hub could not be reached."""
    seen = 0
    while err is not None and seen < 10:
        text = f"{type(err).__name__} {err}".lower()
        if isinstance(err, (ConnectionError, TimeoutError)) or any(h in text for h in NETWORK_HINTS):
            return True
        err, seen = (err.__cause__ or err.__context__), seen + 1
    return False


def _explain(err: Exception, spec: str, split: str | None) -> DataError:
    name, _ = parse_hub_spec(spec)
    if is_network_error(err):
        return DataError(
            f"could not fetch the dataset {name!r} from the Hugging Face hub (no network: "
            f"{type(err).__name__}: {str(err)[:200]}). Use a local copy instead: pass the path of a "
            ".jsonl/.json/.csv/.parquet file, or `hf:FOLDER` for a folder of data files or of "
            "save_to_disk output, or download it once on a connected machine and set "
            "HF_DATASETS_OFFLINE=1 with HF_HOME pointing at that cache (HF_HUB_OFFLINE=1 also skips "
            "the network retries)",
            spec)
    if isinstance(err, FileNotFoundError):
        return DataError(f"no dataset {name!r} on the hub or on disk ({err}); check the name, or pass "
                         "a local file path", spec)
    if isinstance(err, ValueError) and "split" in str(err).lower():
        return DataError(f"split {split!r} not found ({err}); choose another with --split", spec)
    return DataError(f"datasets.load_dataset failed: {type(err).__name__}: {err}", spec)
