"""Bad data through `selfdistill train`: the same row-numbered error as `selfdistill data check`,
a non-zero exit, no model loaded, and no half-started run left in output_dir.

Every case of the data engineer's bad-data corpus (tests/test_data_bad_corpus.py) is used.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability.guards import forbid_model_loading, run_cli
from test_data_bad_corpus import BAD, CASES

GROUP = ("sdpo", "grpo", "srpo")


def _train_argv(path: Path, method: str, out: Path) -> list[str]:
    argv = ["train", "smoke", f"data={path}", f"method={method}", f"output_dir={out}",
            "logging.progress=false", "logging.tensorboard=false"]
    if method in GROUP:
        argv.append("rollouts_per_prompt=2")
    return argv


def _error_lines(text: str, path: Path) -> list[str]:
    """The `PATH:ROW: field: message` lines, whatever prefix the command puts before them."""
    found = (line[line.find(f"{path}:"):].strip() for line in text.splitlines() if f"{path}:" in line)
    return sorted(line for line in found if line != f"{path}:")  # not a "N errors in PATH:" header


def _in_data_check_syntax(line: str) -> str:
    """A train error line with its column-mapping hints written as `data check` writes them."""
    from selfdistill.data.columns import FIELDS, map_hint

    for field in FIELDS:
        line = line.replace(map_hint(field, "train"), map_hint(field, "data"))
    return line


@pytest.mark.parametrize("name,method,row,field,phrase", CASES, ids=[f"{c[0]}:{c[3]}" for c in CASES])
def test_train_reports_bad_data_like_data_check(name, method, row, field, phrase, tmp_path, capsys, monkeypatch):
    calls = forbid_model_loading(monkeypatch)
    path = BAD / name
    method = method or "grpo"  # grpo needs only problem + answer: the corpus row errors stay the same
    code, check_out, _ = run_cli(["data", "check", str(path), "--method", method], capsys)
    assert code == 1
    expected = _error_lines(check_out, path)
    assert expected, check_out

    out = tmp_path / "run"
    code, train_out, train_err = run_cli(_train_argv(path, method, out), capsys)
    assert code != 0
    assert "Traceback" not in train_err
    got = [_in_data_check_syntax(line) for line in _error_lines(train_err, path)]
    assert got == expected, f"train said:\n{train_err}\ndata check said:\n{check_out}"
    assert "--columns" not in train_err  # hints in train's own syntax (data.columns=...)
    prefix = f"{path}:{row}: {field}: " if row else f"{path}: {field}: "
    assert any(line.startswith(prefix) and phrase in line for line in got), train_err
    assert calls == []  # data is validated before any model loads
    assert not out.exists(), f"a half-started run was left in {out}: {sorted(out.rglob('*'))}"
