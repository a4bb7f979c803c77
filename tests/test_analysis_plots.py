"""The overlay plot of training curves (demo and study reports)."""

from __future__ import annotations

from selfdistill.analysis import plots


def test_metric_overlays_keeps_one_colour_per_run(tmp_path, monkeypatch):
    seen = {}
    real_save = plots._save

    def capture(fig, path):
        seen["fig"] = [[(line.get_label(), line.get_color()) for line in ax.get_lines()] for ax in fig.axes]
        return real_save(fig, path)

    monkeypatch.setattr(plots, "_save", capture)
    series = {
        "grpo": [{"step": 1, "loss": 0.1}, {"step": 2, "loss": 0.2}],  # no teacher entropy
        "sdpo": [{"step": 1, "loss": 0.3, "teacher/entropy": 2.0}, {"step": 2, "loss": 0.1, "teacher/entropy": 2.5}],
    }
    out = plots.metric_overlays(series, [("loss", "loss"), ("teacher/entropy", "entropy"), ("absent", "x")],
                                tmp_path / "curves.png", title="t")
    assert out is not None and out.stat().st_size > 0
    loss_ax, entropy_ax = seen["fig"][0], seen["fig"][1]
    assert [name for name, _ in loss_ax] == ["grpo", "sdpo"] and [name for name, _ in entropy_ax] == ["sdpo"]
    assert dict(loss_ax)["sdpo"] == dict(entropy_ax)["sdpo"] != dict(loss_ax)["grpo"]
    assert plots.metric_overlays(series, [("absent", "x")], tmp_path / "none.png", title="t") is None
