"""The method table: every method is one record, and adding one needs nothing else (the example
of docs/design.md, run for real)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from selfdistill import methods
from selfdistill.objectives import registry
from selfdistill.objectives.targets import log_probs
from selfdistill.train.config import load_config
from selfdistill.train.loop import Trainer
from selfdistill.train.rollouts import FixedRollouts

SRC = Path(__file__).resolve().parents[1] / "src" / "selfdistill"


def test_no_code_outside_the_table_tests_a_method_name():
    pattern = re.compile(r"""(method|\.name)\s*(==|!=|in)\s*\(?["'](opsd|purified-opsd|sdpo|grpo|srpo)""")
    hits = [f"{p.relative_to(SRC)}:{n}" for p in SRC.rglob("*.py") if p.name != "methods.py"
            for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert hits == []


def test_every_record_names_a_registered_target_and_renderable_roles():
    from selfdistill.contexts import ROLES

    for m in methods.METHODS.values():
        assert (m.target is None) == (not m.distills), m.name
        if m.target:
            assert m.target in registry.TARGETS
        assert m.teacher_context in (None, *ROLES) and set(m.base_roles) <= set(ROLES)
        assert m.keys <= methods.GOVERNED_KEYS
        assert m.policy_gradient in ("none", "response", "unrouted")
        assert m.distill in ("none", "response", "with_context", "routed")


def test_modifier_applies_only_where_declared():
    assert methods.get("grpo", modifiers=("antisd",)).context_scores
    with pytest.raises(ValueError, match="applies to method grpo, not opsd"):
        methods.get("opsd", modifiers=("antisd",))


def _half_target(logits, *, temperature: float = 1.0):
    return log_probs(0.5 * (logits["teacher"] + logits["student"]), temperature=temperature)


def test_a_new_method_is_one_record_plus_one_target(tmp_path, monkeypatch):
    """docs/design.md "Adding a method": register the target, add the record, train a step."""
    monkeypatch.setitem(registry.TARGETS._fns, "half", _half_target)
    _half_target.roles = ("teacher", "student")
    monkeypatch.setitem(methods.METHODS, "half-opsd", methods.Method(
        "half-opsd", "OPSD toward the midpoint of the teacher's and the student's logits",
        teacher_context="teacher", target="half", distill="response", needs_solution=True,
        keys=methods.DISTILL_KEYS))
    cfg = load_config("smoke", ["model=tiny-random", "method=half-opsd", "max_steps=1", "data.limit=2",
                                f"output_dir={tmp_path}", "logging.tensorboard=false", "logging.progress=false",
                                "rewards.for_all=false"])
    eos = lambda tok, ids, j: [11, 12, 13, tok.eos_token_id]  # noqa: E731
    trainer = Trainer(cfg, rollout_backend=FixedRollouts.factory(eos))
    trainer.fit()
    row = [line for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][0]
    import json

    row = json.loads(row)
    assert math.isfinite(row["loss"]) and row["loss"] > 0 and row["skipped"] == 0
    assert trainer.passes.teacher is not None and trainer.passes.base is None  # no refonly/base passes
    with pytest.raises(Exception, match="objective.eps_high=0.4 is not read by method half-opsd"):
        load_config("smoke", ["method=half-opsd", "objective.eps_high=0.4"])


def _top_level_imports(path: Path, package: str) -> set[str]:
    """selfdistill modules ``path`` imports when it loads (TYPE_CHECKING blocks and function-level
    imports excluded)."""
    import ast

    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        nodes = [node] if not isinstance(node, (ast.If, ast.Try)) else list(ast.walk(node))
        for n in nodes:
            if isinstance(n, ast.ImportFrom):
                base = n.module or ""
                if n.level:
                    parts = package.split(".")[: len(package.split(".")) - n.level + 1]
                    base = ".".join(parts + ([n.module] if n.module else []))
                if base.startswith("selfdistill"):
                    out.add(base)
                    out |= {f"{base}.{a.name}" for a in n.names}
            elif isinstance(n, ast.Import):
                out |= {a.name for a in n.names if a.name.startswith("selfdistill")}
    return out


def test_no_import_circle_between_modules():
    modules = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        package = name if rel.name == "__init__" else name.rsplit(".", 1)[0]
        modules[name] = path, package
    graph = {m: {d for d in _top_level_imports(p, pkg) if d in modules and d != m}
             for m, (p, pkg) in modules.items() if not m.endswith("__init__")}
    # a package's __init__ re-exports its modules: edges into a package are not module circles
    graph = {m: {d for d in deps if not (SRC.parent / Path(*d.split("."))).is_dir()} for m, deps in graph.items()}
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for d in graph.get(m, ()):
            visit(d)
        stack.pop()

    for m in sorted(graph):
        visit(m)
    assert cycles == []
    assert "selfdistill.train.config" not in graph["selfdistill.train.checks"]
