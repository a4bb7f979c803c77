"""`selfdistill analyze markers`: marker counts and rates per samples file, a per-marker bar chart,
and (for two or more files) the word-frequency shift of the last file against the first.

A samples file is JSONL with one response per row: the text in ``response`` (or the field given
by ``text_field``) and its length in tokens in ``num_tokens``. The eval runner's ``samples.jsonl``
has both. Rows without ``num_tokens`` are tokenized with ``count_tokens`` when given; otherwise
they are an error naming the row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

from selfdistill.analysis.frequency import frequency_shift
from selfdistill.analysis.markers import MARKERS, count_epistemic_markers, per_1k, sum_counts
from selfdistill.analysis.plots import grouped_bars, scatter_highlight
from selfdistill.analysis.tables import read_jsonl, write_table


def load_responses(path: str | Path, *, text_field: str = "response",
                   count_tokens: Callable[[str], int] | None = None,
                   group_by: str | None = None) -> dict[str, tuple[list[str], list[int]]]:
    """{group: (texts, token counts)} of a samples file; one group "" unless ``group_by`` names
    a field whose values split the rows (e.g. ``setting`` of richness_samples.jsonl). Errors name
    the line, the field and the fix."""
    groups: dict[str, tuple[list[str], list[int]]] = {}
    for i, row in enumerate(read_jsonl(path), 1):
        text = row.get(text_field)
        if not isinstance(text, str):
            raise ValueError(f"{path} row {i}: field {text_field!r} is missing or not a string "
                             f"(pass --text-field with the name of the response field)")
        n = row.get("num_tokens")
        if n is None:
            if count_tokens is None:
                raise ValueError(f"{path} row {i}: no 'num_tokens' field; add it or pass --tokenizer "
                                 f"so responses can be tokenized")
            n = count_tokens(text)
        if group_by is not None and group_by not in row:
            raise ValueError(f"{path} row {i}: no field {group_by!r} to group by")
        texts, lengths = groups.setdefault("" if group_by is None else str(row[group_by]), ([], []))
        texts.append(text)
        lengths.append(int(n))
    if not groups:
        raise ValueError(f"{path} holds no responses")
    return groups


def file_marker_row(name: str, texts: Sequence[str], lengths: Sequence[int], mode: str) -> dict:
    """One table row: responses, tokens, per-response and per-1k totals, per-marker per-1k rates."""
    counts = sum_counts(count_epistemic_markers(t, mode) for t in texts)
    tokens = sum(lengths)
    row: dict = {"group": name, "mode": mode, "responses": len(texts), "tokens": tokens,
                 "mean_tokens": tokens / len(texts), "E_per_response": counts["total"] / len(texts),
                 "total_per_1k": per_1k(counts["total"], tokens)}
    for m in MARKERS:
        row[m] = counts[m]
        row[f"{m}_per_1k"] = per_1k(counts[m], tokens)
    return row


def analyze_marker_files(paths: Sequence[str | Path], output_dir: str | Path, *,
                         text_field: str = "response", alpha: float = 0.5, min_count: int = 3,
                         count_tokens: Callable[[str], int] | None = None, group_by: str | None = None,
                         compare: tuple[str, str] | None = None) -> dict:
    """Write markers.{md,csv}, markers_per_1k_{word,paper}.png and, with >= 2 groups,
    freq_shift.{md,csv}, freq_shift_summary.{md,csv} and freq_shift.png.

    A group is a file, or with ``group_by`` a (file, field value) pair (labelled by the value alone
    when there is one file). The shift compares B against A with ``compare=(A, B)``, default the
    first and the last group. Returns {"rows": [...], "shift_summary": dict | None}.
    """
    out = Path(output_dir)
    loaded: dict[str, tuple[list[str], list[int]]] = {}
    for name, path in zip(_short_names(paths), paths):
        groups = load_responses(path, text_field=text_field, count_tokens=count_tokens, group_by=group_by)
        for value, data in groups.items():
            label = name if group_by is None else (value if len(paths) == 1 else f"{name}:{value}")
            loaded[label] = data
    names = list(loaded)
    rows = [file_marker_row(n, texts, lengths, mode)
            for mode in ("word", "paper") for n, (texts, lengths) in loaded.items()]
    columns = ["group", "mode", "responses", "tokens", "mean_tokens", "E_per_response", "total_per_1k",
               *MARKERS, *(f"{m}_per_1k" for m in MARKERS)]
    write_table(rows, columns, out / "markers", title="Epistemic markers per file")
    for mode in ("word", "paper"):
        series = {r["group"]: [r[f"{m}_per_1k"] for m in MARKERS] for r in rows if r["mode"] == mode}
        grouped_bars(series, list(MARKERS), out / f"markers_per_1k_{mode}.png",
                     title=f"Epistemic markers per 1k tokens ({mode} mode)", ylabel="per 1k tokens")
    result: dict = {"rows": rows, "shift_summary": None}
    if compare is not None and any(c not in loaded for c in compare):
        raise ValueError(f"--compare {','.join(compare)}: groups are {', '.join(names)}")
    if len(names) >= 2:
        a, b = compare or (names[0], names[-1])
        shift_rows, summary = frequency_shift(loaded[a][0], loaded[b][0], alpha=alpha, min_count=min_count)
        table = [{"word": r.word, "marker": "yes" if r.is_marker else "", "count_a": r.count_a,
                  "count_b": r.count_b, "freq_a": r.freq_a, "freq_b": r.freq_b,
                  "log2_ratio": r.log2_ratio} for r in shift_rows]
        title = (f"Word frequency shift, B = {b} vs A = {a} (log2 of smoothed relative frequency, "
                 f"alpha={alpha}, min_count={min_count}); marker mean {summary['marker_mean_log2_ratio']:.3f}, "
                 f"other words mean {summary['other_mean_log2_ratio']:.3f}")
        write_table(table, ["word", "marker", "count_a", "count_b", "freq_a", "freq_b", "log2_ratio"],
                    out / "freq_shift", title=title)
        write_table([{"key": k, "value": v} for k, v in summary.items()], ["key", "value"],
                    out / "freq_shift_summary", title=f"Frequency shift summary ({b} vs {a})")
        scatter_highlight([math.log10(0.5 * (r.freq_a + r.freq_b)) for r in shift_rows],
                          [r.log2_ratio for r in shift_rows], [r.word for r in shift_rows],
                          set(MARKERS), out / "freq_shift.png",
                          title=f"Per-word frequency shift: {b} vs {a}",
                          xlabel="log10 mean relative frequency", ylabel="log2 f_B / f_A")
        result["shift_summary"] = summary
    return result


def _short_names(paths: Sequence[str | Path]) -> list[str]:
    """Distinct short labels: the file name, or parent/name when names collide."""
    names = [Path(p).name for p in paths]
    if len(set(names)) < len(names):
        names = [f"{Path(p).parent.name}/{Path(p).name}" for p in paths]
    if len(set(names)) < len(names):
        names = [f"{i}:{n}" for i, n in enumerate(names)]
    return names
