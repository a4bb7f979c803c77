"""Token-level student-teacher KL on sampled responses (arXiv 2603.24472 Table 6) and the
Purified-OPSD decomposition of the teacher signal (docs/methods.md section 3).

For every response token t (student = question only, teacher = OPSD privileged prompt,
refonly = the teacher prompt without the problem, all rendered by the one renderer and scored
on the same response ids):

    kl_t     = KL(p_S || p_T) at t, the reverse KL the OPSD objective minimises (nats)
    kl_fwd_t = KL(p_T || p_S) at t (reported alongside)

Epistemic token variants: a token is a marker token when a word of the response whose stem is a
marker (word-mode rule of ``analysis.markers``) starts inside that token's decoded text; its
variant is the token's decoded text as is (" Wait", "wait", "Hmm"...). Table 6 compares the
mean KL of each variant to the corpus mean KL over all response tokens (ratio = mean / corpus).

The decomposition calls ``objectives.pmi_diagnostics`` on (teacher, refonly, student) logits:
cos(D_total, D_ref), cos(D_total, D_it), |D_ref| / |D_total|, KL(T||R) / KL(T||S) with
distribution summaries, over all tokens and over marker tokens only.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from selfdistill.analysis.markers import MARKERS, WORD_RE, word_stem
from selfdistill.contexts import Renderer
from selfdistill.models import ForwardInputs, eval_mode, response_logits
from selfdistill.objectives.diagnostics import distribution_summary, pmi_diagnostics
from selfdistill.types import Example

ROLES = ("student", "teacher", "refonly")
DIAG_KEYS = ("cos_total_ref", "cos_total_it", "norm_ratio_ref_total", "kl_ratio_ref")


@dataclass
class TokenScores:
    """Per-token results of all responses, concatenated (N tokens in total).

    kl_N: KL(p_S || p_T); kl_fwd_N: KL(p_T || p_S); marker_N: the marker of marker tokens, "" else;
    variant_N: decoded token text; per_position: pmi_diagnostics per-position tensors [N];
    diagnostics: the scalar outputs of pmi_diagnostics averaged over responses (token-weighted).
    """

    kl_N: torch.Tensor
    kl_fwd_N: torch.Tensor
    marker_N: list[str]
    variant_N: list[str]
    per_position: dict[str, torch.Tensor]
    num_responses: int


def marker_tokens(token_texts: Sequence[str]) -> list[str]:
    """For each token, the marker whose word starts inside it, or "" (see the module docstring)."""
    starts, offset = [], 0
    for text in token_texts:
        starts.append(offset)
        offset += len(text)
    full = "".join(token_texts)
    out = [""] * len(token_texts)
    for match in WORD_RE.finditer(full):
        stem = word_stem(match.group(0).lower().replace("\u2019", "'"))
        if stem in MARKERS:
            token = bisect.bisect_right(starts, match.start()) - 1  # holds the word's first char
            out[token] = out[token] or stem
    return out


def scoring_logits(model, batch) -> torch.Tensor:
    """``logits_T_V`` (float64, on the model's device) of the one row of ``batch`` (a
    ScoringBatch built on the CPU by the renderer): its tensors are moved to the model first."""
    device = next(model.parameters()).device
    return response_logits(model, ForwardInputs.of(batch).to(device))[0].double()


@torch.no_grad()
def score_tokens(model, tokenizer, renderer: Renderer, examples: Sequence[Example],
                 response_ids: Sequence[Sequence[int]]) -> TokenScores:
    """Score every response under student, teacher and refonly, one response per forward.

    The passes run on the model's device; the per-token results are returned on the CPU."""
    kl, kl_fwd, markers, variants = [], [], [], []
    per_position: dict[str, list[torch.Tensor]] = defaultdict(list)
    with eval_mode(model):
        for example, ids in zip(examples, response_ids):
            if not ids:
                continue
            batches = renderer.scoring_batches(ROLES, [example], [list(ids)])
            logits = {role: scoring_logits(model, b) for role, b in batches.items()}  # [T, V]
            lp_s = torch.log_softmax(logits["student"], -1)
            lp_t = torch.log_softmax(logits["teacher"], -1)
            kl.append((lp_s.exp() * (lp_s - lp_t)).sum(-1).clamp(min=0.0).cpu())
            kl_fwd.append((lp_t.exp() * (lp_t - lp_s)).sum(-1).clamp(min=0.0).cpu())
            diag = pmi_diagnostics(logits["teacher"], logits["refonly"], logits["student"])
            for key in DIAG_KEYS:
                per_position[key].append(diag[f"{key}_per_position"].double().cpu())
            texts = [tokenizer.decode([t]) for t in ids]
            variants += texts
            markers += marker_tokens(texts)
    if not kl:
        raise ValueError("token-kl: no non-empty response to score")
    return TokenScores(torch.cat(kl), torch.cat(kl_fwd), markers, variants,
                       {k: torch.cat(v) for k, v in per_position.items()}, len(kl))


def variant_table(scores: TokenScores, *, min_count: int = 1) -> tuple[list[dict], float]:
    """Rows per marker token variant (count, mean KL, ratio to the corpus mean), sorted by ratio;
    and the corpus mean KL over all tokens."""
    corpus = float(scores.kl_N.mean())
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, (marker, variant) in enumerate(zip(scores.marker_N, scores.variant_N)):
        if marker:
            groups[(marker, variant)].append(i)
    rows = []
    for (marker, variant), idx in groups.items():
        if len(idx) < min_count:
            continue
        values = scores.kl_N[idx]
        mean = float(values.mean())
        rows.append({"marker": marker, "variant": repr(variant), "count": len(idx), "mean_kl": mean,
                     "ratio_to_mean": mean / corpus if corpus > 0 else float("nan"),
                     "mean_kl_fwd": float(scores.kl_fwd_N[idx].mean())})
    rows.sort(key=lambda r: -r["ratio_to_mean"])
    return rows, corpus


def diagnostics_table(scores: TokenScores) -> list[dict]:
    """pmi_diagnostics summaries over all tokens and over marker tokens: mean, median, q10, q90."""
    is_marker = torch.tensor([bool(m) for m in scores.marker_N])
    rows = []
    for subset, sel in (("all tokens", torch.ones_like(is_marker)), ("marker tokens", is_marker),
                        ("other tokens", ~is_marker)):
        if not bool(sel.any()):
            continue
        for key in DIAG_KEYS:
            s = distribution_summary(scores.per_position[key][sel])
            rows.append({"tokens": subset, "quantity": key, "n": int(sel.sum()), **{
                k: s[k] for k in ("mean", "median", "q10", "q90", "frac_above_1")}})
        kl = scores.kl_N[sel]
        rows.append({"tokens": subset, "quantity": "kl_student_teacher", "n": int(sel.sum()),
                     **{k: v for k, v in distribution_summary(kl).items()
                        if k in ("mean", "median", "q10", "q90", "frac_above_1")}})
    return rows


def write_token_kl(scores: TokenScores, output_dir: str | Path, *, title_note: str = "") -> dict:
    """token_kl_variants.{md,csv}, token_kl_diagnostics.{md,csv}, token_kl_hist.png,
    pmi_cosines_hist.png; returns {"corpus_mean_kl", "variants", "diagnostics"}."""
    from selfdistill.analysis.plots import histograms
    from selfdistill.analysis.tables import write_table

    out = Path(output_dir)
    variants, corpus = variant_table(scores)
    n_tokens = int(scores.kl_N.numel())
    write_table(variants, ["marker", "variant", "count", "mean_kl", "ratio_to_mean", "mean_kl_fwd"],
                out / "token_kl_variants",
                title=f"KL(student || teacher) per epistemic token variant; corpus mean {corpus:.4f} nats "
                      f"over {n_tokens} tokens of {scores.num_responses} responses{title_note}")
    diagnostics = diagnostics_table(scores)
    write_table(diagnostics, ["tokens", "quantity", "n", "mean", "median", "q10", "q90", "frac_above_1"],
                out / "token_kl_diagnostics", title=f"Purified OPSD decomposition (pmi_diagnostics){title_note}")
    is_marker = [bool(m) for m in scores.marker_N]
    log_kl = torch.log10(scores.kl_N.clamp(min=1e-8))
    histograms({"all tokens": log_kl.tolist(),
                "marker tokens": [v for v, m in zip(log_kl.tolist(), is_marker) if m]},
               out / "token_kl_hist.png", title="Per-token KL(student || teacher)",
               xlabel="log10 KL (nats)", log_y=True)
    histograms({k: scores.per_position[k].tolist() for k in ("cos_total_ref", "cos_total_it")},
               out / "pmi_cosines_hist.png", title="Per-token cosines of the teacher signal",
               xlabel="cosine")
    return {"corpus_mean_kl": corpus, "variants": variants, "diagnostics": diagnostics}


def responses_for(model, tokenizer, renderer: Renderer, examples: Sequence[Example], params,
                  *, samples_path: str | Path | None = None) -> tuple[list[Example], list[list[int]]]:
    """(example per response, response ids) to score.

    From ``samples_path`` (JSONL rows with ``problem_id`` and ``response``, e.g. eval's
    samples.jsonl): every row whose problem_id names one of ``examples``; ``response_ids`` is used
    when present, else the response text is re-tokenized (which can differ from the sampled ids
    at a few boundaries). Without a file: one student-prompt sample per example.
    """
    if samples_path is None:
        from selfdistill.rollout import HFGenerate

        prompts = [renderer.prompt_ids("student", ex) for ex in examples]
        samples = HFGenerate(model, tokenizer).generate(prompts, params)
        return [examples[s.prompt_index] for s in samples], [list(s.response_ids) for s in samples]
    from selfdistill.analysis.tables import read_jsonl

    by_id = {ex.id: ex for ex in examples}
    chosen, ids = [], []
    for i, row in enumerate(read_jsonl(samples_path), 1):
        pid = str(row.get("problem_id"))
        if pid not in by_id:
            continue
        if "response_ids" in row:
            ids.append([int(t) for t in row["response_ids"]])
        elif isinstance(row.get("response"), str):
            ids.append(list(tokenizer(row["response"], add_special_tokens=False)["input_ids"]))
        else:
            raise ValueError(f"{samples_path} row {i}: needs 'response' (text) or 'response_ids'")
        chosen.append(by_id[pid])
    if not chosen:
        raise ValueError(f"{samples_path}: no row's problem_id matches the {len(examples)} loaded "
                         f"problems (first ids: {list(by_id)[:3]}); use the same --data and --limit")
    return chosen, ids
