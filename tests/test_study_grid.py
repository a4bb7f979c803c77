"""Study definitions without models: settings resolution, grids, cell selection, the CLI's --list."""

import pytest

from selfdistill.cli import main
from selfdistill.studies import STUDIES, StudyError, resolve_settings, select_cells


def _cells(name, *pairs):
    settings, extra = resolve_settings(STUDIES[name], list(pairs))
    return [c.name for c in select_cells(STUDIES[name], settings)], settings, extra


def test_settings_are_coerced_and_unknown_keys_become_train_overrides():
    names, s, extra = _cells("task-coverage", "sizes=1,8", "steps=3", "lr=1e-3", "progress=true",
                             "sampling.top_k=0")
    assert s["sizes"] == [1, 8] and s["steps"] == 3 and s["lr"] == 1e-3 and s["progress"] is True
    assert extra == ["sampling.top_k=0"]
    assert names == ["grpo-D1", "grpo-D8", "sdpo-D1", "sdpo-D8"]


def test_bad_values_and_unknown_cells_are_refused_with_the_choices():
    with pytest.raises(StudyError, match="steps='many'.*expected int"):
        resolve_settings(STUDIES["srpo"], ["steps=many"])
    with pytest.raises(StudyError, match="must look like key=value"):
        resolve_settings(STUDIES["srpo"], ["steps"])
    with pytest.raises(StudyError, match="its cells are: grpo, sdpo, srpo"):
        _cells("srpo", "cells=grpo,nope")
    with pytest.raises(StudyError, match="scale must be cpu or gpu"):
        resolve_settings(STUDIES["srpo"], ["scale=tpu"])


def test_purified_grid_axes_on_cpu_and_full_cross_on_gpu():
    axes, _, _ = _cells("purified-ablation")
    assert axes == ["opsd", "purified-c5-b1", "purified-c10-b1", "purified-c20-b1", "purified-c10-b0.5",
                    "purified-c10-b2", "purified-c10-b1-student"]
    cross, s, _ = _cells("purified-ablation", "scale=gpu")
    assert len(cross) == 1 + 9 + 1 and s["model"] == "Qwen/Qwen3-8B" and s["grid"] == "cross"
    assert _cells("purified-ablation", "clips=10", "betas=1", "anchors=base")[0] == ["opsd", "purified-c10-b1"]


def test_gpu_scale_keeps_recipe_lr_and_paper_sizes():
    from selfdistill.studies.jobs import common_overrides

    _, s, _ = _cells("task-coverage", "scale=gpu")
    assert s["sizes"] == [1, 8, 64, 128, 512] and s["rollouts"] == 8
    overrides = common_overrides(s, "runs/x", max_steps=5, resume=False)
    assert not any(o.startswith(("optimizer.lr=", "sampling.temperature=")) for o in overrides)
    _, cpu, _ = _cells("task-coverage")
    assert "optimizer.lr=0.0002" in common_overrides(cpu, "runs/x", max_steps=5, resume=False)


def test_every_study_builds_valid_train_configs(tmp_path):
    """Each training cell's overrides pass the trainer's own config checks (no model loaded)."""
    from selfdistill.studies.jobs import cell_config

    for study in STUDIES.values():
        for scale in ("cpu", "gpu"):
            settings, extra = resolve_settings(study, [f"scale={scale}"])
            for cell in select_cells(study, settings):
                if cell.kind == "train" and cell.data is None:
                    cfg = cell_config(cell, settings, extra, tmp_path, tmp_path / cell.name, max_steps=2,
                                      resume=False)
                    assert cfg.method.name == cell.recipe  # recipe names are method names


def test_cli_list(capsys):
    assert main(["study", "--list"]) == 0
    out = capsys.readouterr().out
    for name in STUDIES:
        assert name in out
    assert main(["study", "srpo", "--list", "budget_s=30"]) == 0
    assert "budget 30 s" in capsys.readouterr().out
    assert main(["study", "nope"]) == 2
    assert "unknown study 'nope'" in capsys.readouterr().err
    assert main(["study", "srpo", "steps=x"]) == 2
