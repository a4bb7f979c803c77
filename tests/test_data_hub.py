"""The Hugging Face datasets code path, run on local data (the machine is offline)."""

from __future__ import annotations

import json

import datasets
import pytest

from selfdistill.cli import main
from selfdistill.data import DataError, load_examples
from selfdistill.data.hub import is_network_error

GSM8K_ROWS = [
    {"question": "Ann has 2 apples and buys 3 more. How many apples does she have?",
     "answer": "She has 2 + 3 = <<2+3=5>>5 apples.\n#### 5"},
    {"question": "A box holds 4 rows of 5 eggs. How many eggs?", "answer": "4 * 5 = <<4*5=20>>20 eggs.\n#### 20"},
    {"question": "Bo runs 3 km a day for 7 days. How many km?", "answer": "3 * 7 = <<3*7=21>>21 km.\n#### 21"},
]


@pytest.fixture(autouse=True)
def _own_hf_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_load_dataset_json_builder_gsm8k_format(tmp_path):
    path = _write_jsonl(tmp_path / "gsm8k_test.jsonl", GSM8K_ROWS)
    examples = load_examples(f"hf:json?data_files={path}", method="opsd", need_answer=True)
    assert [(e.answer, e.solution) for e in examples] == [
        ("5", "She has 2 + 3 = <<2+3=5>>5 apples."), ("20", "4 * 5 = <<4*5=20>>20 eggs."),
        ("21", "3 * 7 = <<3*7=21>>21 km.")]
    assert examples[1].origin == "json train row 2" and examples[1].id == "json-train-2"


def test_local_folder_with_splits(tmp_path):
    folder = tmp_path / "my_gsm8k"
    folder.mkdir()
    _write_jsonl(folder / "train.jsonl", GSM8K_ROWS[:2])
    _write_jsonl(folder / "test.jsonl", GSM8K_ROWS[2:])
    assert [e.answer for e in load_examples(f"hf:{folder}")] == ["5", "20"]  # train by default
    assert [e.answer for e in load_examples(f"hf:{folder}", split="test")] == ["21"]
    with pytest.raises(DataError, match="split"):
        load_examples(f"hf:{folder}", split="validation")


def test_save_to_disk_folder(tmp_path):
    datasets.Dataset.from_list(GSM8K_ROWS).save_to_disk(str(tmp_path / "saved"))
    examples = load_examples(f"hf:{tmp_path / 'saved'}", limit=2)
    assert [e.answer for e in examples] == ["5", "20"]


def test_hub_name_offline_mode_gives_a_clear_error(monkeypatch, capsys):
    """The real datasets call for openai/gsm8k in offline mode (no network use, fails at once)."""
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError) as caught:
        load_examples("openai/gsm8k:main", split="test")
    message = str(caught.value)
    assert message.startswith("openai/gsm8k:main: source: could not fetch the dataset 'openai/gsm8k'")
    assert "HF_DATASETS_OFFLINE=1" in message and "path of a" in message
    assert main(["data", "check", "openai/gsm8k:main", "--split", "test"]) == 1
    out = capsys.readouterr()
    assert "could not fetch" in out.out and "Traceback" not in out.out + out.err


def test_network_failure_without_offline_mode(monkeypatch):
    """What datasets raises when DNS fails (seen on this machine), after its retries."""
    def unreachable(*args, **kwargs):
        try:
            raise OSError("[Errno -2] Name or service not known")
        except OSError as cause:
            raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (LocalEntryNotFoundError)") from cause

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(DataError, match="could not fetch the dataset 'openai/gsm8k'"):
        load_examples("openai/gsm8k:main")


def test_is_network_error_looks_through_causes():
    try:
        try:
            raise TimeoutError("read timed out")
        except TimeoutError as inner:
            raise RuntimeError("wrapper") from inner
    except RuntimeError as outer:
        assert is_network_error(outer)
    assert not is_network_error(ValueError("bad config name"))


def test_unknown_local_dataset_and_unknown_parameter(tmp_path):
    with pytest.raises(DataError, match="unknown hub parameter"):
        load_examples("hf:json?cache=1")
    with pytest.raises(DataError) as caught:
        load_examples(f"hf:{tmp_path / 'nothing-here'}")
    assert "Traceback" not in str(caught.value)
