"""Issue 9 controls: the wrong-reference pairing, and every quantity vs a plain computation."""

import pytest
import torch
from hypothesis import given, strategies as st

from selfdistill.analysis.controls import (
    control_tables,
    derangement,
    score_controls,
    write_controls,
    wrong_reference_examples,
)
from selfdistill.types import Example


@given(st.integers(2, 60), st.integers(0, 10_000))
def test_derangement_has_no_fixed_point(n, seed):
    perm = derangement(n, seed)
    assert sorted(perm) == list(range(n))
    assert all(perm[i] != i for i in range(n))
    assert perm == derangement(n, seed)


def test_derangement_needs_two():
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1, 0)


def _examples():
    return [Example(id=f"p{i}", problem=f"What is {i} + {i}?", solution=f"{i} + {i} = {2 * i}.",
                    answer=str(2 * i)) for i in range(4)]


def test_wrong_reference_pairs_each_problem_with_another_problems_reference():
    exs = _examples()
    doubled = [e for e in exs for _ in range(2)]  # two responses per problem
    swapped, donors = wrong_reference_examples(doubled, seed=3)
    for orig, new in zip(doubled, swapped):
        assert new.problem == orig.problem and new.id == orig.id
        assert new.solution != orig.solution
        assert new.solution in {e.solution for e in exs}
    # both responses of a problem get the same donor
    assert donors[0] == donors[1] and donors[2] == donors[3]


@pytest.fixture(scope="module")
def tiny():
    from selfdistill.contexts import ContextConfig, Renderer
    from selfdistill.models import load_model

    torch.manual_seed(0)
    model, tok = load_model("tiny-random")
    model.eval()
    return model, tok, Renderer(tok, ContextConfig(max_length=2048))


def _plain_logprobs(model, prompt, response):
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].double()
    return logits[len(prompt) - 1: len(prompt) - 1 + len(response)].log_softmax(-1)


def test_controls_match_a_plain_computation(tiny):
    model, tok, renderer = tiny
    exs = _examples()[:3]
    responses = [tok(f"The answer is {2 * i}. Wait, let me check.", add_special_tokens=False)["input_ids"]
                 for i in range(3)]
    scores = score_controls(model, renderer, exs, responses, seed=1)
    swapped, _ = wrong_reference_examples(exs, seed=1)
    want = {"matched": [], "wrong_reference": []}
    blank_shift = []
    for ex, ex_w, resp in zip(exs, swapped, responses):
        s = _plain_logprobs(model, renderer.prompt_ids("student", ex), resp)
        b = _plain_logprobs(model, renderer.prompt_ids("blank", ex), resp)
        for cond, e in (("matched", ex), ("wrong_reference", ex_w)):
            t = _plain_logprobs(model, renderer.prompt_ids("teacher", e), resp)
            r = _plain_logprobs(model, renderer.prompt_ids("refonly", e), resp)
            for pos in range(len(resp)):
                d_total, d_ref = t[pos] - s[pos], r[pos] - s[pos]
                norm_ratio = d_ref.norm() / d_total.norm()
                kl_tr = (t[pos].exp() * (t[pos] - r[pos])).sum()
                kl_ts = (t[pos].exp() * (t[pos] - s[pos])).sum()
                cos = (d_total @ d_ref) / (d_total.norm() * d_ref.norm())
                want[cond].append((float(norm_ratio), float(kl_tr / kl_ts), float(cos)))
                if cond == "matched":
                    shift = b[pos] - s[pos]
                    blank_shift.append(float((shift @ d_ref) / (shift.norm() * d_ref.norm())))
    for cond in want:
        got = scores.per_condition[cond]
        exp = torch.tensor(want[cond], dtype=torch.float64)
        assert torch.allclose(got["norm_ratio_ref_total"], exp[:, 0], atol=1e-4)
        assert torch.allclose(got["kl_ratio_ref"], exp[:, 1], atol=1e-4)
        assert torch.allclose(got["cos_total_ref"], exp[:, 2], atol=1e-4)
    assert torch.allclose(scores.blank["cos_blank_shift_ref"], torch.tensor(blank_shift, dtype=torch.float64),
                          atol=1e-4)
    # the controls are not a copy of the matched numbers
    assert not torch.allclose(scores.per_condition["matched"]["norm_ratio_ref_total"],
                              scores.per_condition["wrong_reference"]["norm_ratio_ref_total"])
    side, effect, blank = control_tables(scores)
    eff = {r["quantity"]: r for r in effect}
    m = scores.per_condition["matched"]["kl_ratio_ref"].mean()
    w = scores.per_condition["wrong_reference"]["kl_ratio_ref"].mean()
    assert eff["kl_ratio_ref"]["content_effect_mean"] == pytest.approx(float(m - w), abs=1e-9)
    assert {r["condition"] for r in side} == {"matched", "wrong_reference"}
    assert len(blank) == 5


def test_write_controls_files(tiny, tmp_path):
    model, tok, renderer = tiny
    exs = _examples()[:2]
    responses = [tok("Maybe 4.", add_special_tokens=False)["input_ids"]] * 2
    write_controls(score_controls(model, renderer, exs, responses), tmp_path)
    for name in ("controls_side_by_side.md", "controls_content_effect.csv", "controls_blank.md",
                 "controls_pairing.csv", "controls_norm_ratio_ref_total_hist.png",
                 "controls_kl_ratio_ref_hist.png", "controls_blank_hist.png"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_token_kl_cli_with_controls(tmp_path, capsys):
    import json

    from selfdistill.cli import main

    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"id": e.id, "problem": e.problem, "solution": e.solution,
                                        "answer": e.answer}) + "\n" for e in _examples()[:3]))
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps({"problem_id": f"p{i}", "response": f"Maybe {2 * i}."}) + "\n"
                               for i in range(3)))
    out = tmp_path / "tk"
    assert main(["analyze", "token-kl", "--model", "tiny-random", "--data", str(data), "--samples",
                 str(samples), "--controls", "--output-dir", str(out)]) == 0
    pairing = (out / "controls_pairing.csv").read_text().splitlines()[1:]
    assert len(pairing) == 3 and all(a != b for a, b in (row.split(",") for row in pairing))
    assert "wrong_reference" in (out / "controls_side_by_side.md").read_text()
    assert "content_effect_mean" in capsys.readouterr().out
