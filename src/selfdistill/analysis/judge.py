"""LLM-judge count of uncertainty expressions (arXiv 2603.24472 appendix B.5), through any
OpenAI-compatible ``/chat/completions`` endpoint.

The judge is asked for JSON ``{"count": int, "examples": [...]}``. Requests are bounded: a
per-request timeout, a fixed number of retries on transport errors or unparseable replies, and
a cap on the number of responses judged. The API key is read from an environment variable and
is only ever put in the Authorization header: never printed, logged or written to a file.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

JUDGE_PROMPT = """You will read a reasoning trace written by a language model while solving a math problem.
Count the expressions of uncertainty in it: places where the writer signals doubt, hesitation,
tentativeness or self-correction (for example "wait", "hmm", "maybe", "I'm not sure",
"let me double-check", "that seems off"). Count every occurrence; do not count plain statements.

Reply with a single JSON object and nothing else:
{{"count": <integer>, "examples": [<up to 5 short quotes from the trace>]}}

Trace:
<<<
{response}
>>>"""

_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


class JudgeError(RuntimeError):
    """The endpoint failed or kept answering with something that is not the requested JSON."""


@dataclass(frozen=True)
class JudgeClient:
    """An OpenAI-compatible chat endpoint.

    Attributes:
        base_url: e.g. ``https://api.openai.com/v1`` or ``http://127.0.0.1:8000/v1``.
        model: the judge model name sent in the request.
        api_key: sent as ``Authorization: Bearer``; None sends no header (local servers).
        timeout_s: per-request timeout; max_retries: extra attempts per response.
    """

    base_url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 60.0
    max_retries: int = 2
    max_tokens: int = 512

    def __repr__(self) -> str:  # keep the key out of reprs, tracebacks and logs
        return f"JudgeClient(base_url={self.base_url!r}, model={self.model!r}, api_key={'set' if self.api_key else None})"

    def _post(self, payload: dict) -> dict:
        request = urllib.request.Request(
            self.base_url.rstrip("/") + "/chat/completions", data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json",
                     **({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {})},
            method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
            return json.loads(reply.read().decode("utf-8"))

    def count(self, response: str) -> dict:
        """``{"count": int, "examples": list[str]}`` for one response; JudgeError after retries."""
        payload = {"model": self.model, "temperature": 0.0, "max_tokens": self.max_tokens,
                   "messages": [{"role": "user", "content": JUDGE_PROMPT.format(response=response)}]}
        problem = ""
        for attempt in range(self.max_retries + 1):
            try:
                content = self._post(payload)["choices"][0]["message"]["content"]
                return parse_judgement(content)
            except urllib.error.HTTPError as err:
                problem = f"HTTP {err.code} from {self.base_url}"
                if err.code in (400, 401, 403, 404):
                    break  # retrying will not help
            except (urllib.error.URLError, TimeoutError, OSError) as err:
                problem = f"cannot reach {self.base_url}: {getattr(err, 'reason', err)}"
            except (KeyError, IndexError, TypeError, json.JSONDecodeError, ValueError) as err:
                problem = f"unusable reply: {err}"
            time.sleep(min(2.0, 0.2 * 2**attempt))
        raise JudgeError(f"judge failed after {attempt + 1} attempt(s): {problem}")


def parse_judgement(content: str) -> dict:
    """The ``{"count", "examples"}`` object inside a reply (code fences and chatter tolerated)."""
    match = _JSON_OBJECT.search(content or "")
    if match is None:
        raise ValueError(f"no JSON object in the judge's reply {content[:80]!r}")
    obj = json.loads(match.group(0))
    count = obj.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError(f"'count' must be a non-negative integer, got {count!r}")
    examples = obj.get("examples", [])
    if not isinstance(examples, list):
        raise ValueError(f"'examples' must be a list, got {type(examples).__name__}")
    return {"count": count, "examples": [str(e) for e in examples]}


def judge_samples(path: str, client: JudgeClient, output_dir: str, *, limit: int = 20,
                  text_field: str = "response") -> dict:
    """Judge the first ``limit`` responses of a samples file; compare with the marker counts.

    Writes judge.jsonl (one row per response: its ids, the judge's count and examples, E in
    both modes), judge_summary.{md,csv} and judge_vs_markers.png. Returns the summary dict.
    """
    from pathlib import Path

    from selfdistill.analysis.markers import count_epistemic_markers
    from selfdistill.analysis.plots import scatter_highlight
    from selfdistill.analysis.tables import read_jsonl, write_table

    if limit < 1:
        raise ValueError(f"limit={limit}: judge at least one response")
    rows = read_jsonl(path)[:limit]
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for i, row in enumerate(rows, 1):
        text = row.get(text_field)
        if not isinstance(text, str):
            raise ValueError(f"{path} row {i}: field {text_field!r} is missing or not a string "
                             "(pass --text-field)")
        verdict = client.count(text)
        results.append({"row": i, "problem_id": row.get("problem_id"), "sample_index": row.get("sample_index"),
                        "judge_count": verdict["count"], "judge_examples": verdict["examples"],
                        "E_word": count_epistemic_markers(text, "word")["total"],
                        "E_paper": count_epistemic_markers(text, "paper")["total"]})
    with open(out / "judge.jsonl", "w", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
    n = len(results)
    judge = [r["judge_count"] for r in results]
    word = [r["E_word"] for r in results]
    summary = {"file": Path(path).name, "judge_model": client.model, "responses": n,
               "judge_mean": sum(judge) / n, "E_word_mean": sum(word) / n,
               "E_paper_mean": sum(r["E_paper"] for r in results) / n,
               "pearson_judge_E_word": _pearson(judge, word)}
    write_table([summary], list(summary), out / "judge_summary",
                title="LLM-judge uncertainty count vs epistemic markers")
    scatter_highlight(word, judge, [str(r["problem_id"]) for r in results], set(), out / "judge_vs_markers.png",
                      title="Judge count vs marker count (word mode)", xlabel="E (word mode)",
                      ylabel="judge count")
    return summary


def _pearson(x: list[float], y: list[float]) -> float:
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / (sxx * syy) ** 0.5 if sxx > 0 and syy > 0 else float("nan")
