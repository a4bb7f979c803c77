"""LLM judge against a real HTTP server on 127.0.0.1 (http.server in a thread)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from selfdistill.analysis.judge import JudgeClient, JudgeError, parse_judgement
from selfdistill.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "samples"
SECRET = "sk-test-do-not-print-1234"


class FakeJudge(BaseHTTPRequestHandler):
    """Counts "wait" and "hmm" in the trace it is sent (so the answer depends on the request).
    The first request of each trace gets a reply without JSON, to exercise the retry."""

    seen: list[dict] = []
    answered_badly: set[str] = set()

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeJudge.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if self.headers.get("Authorization") not in (f"Bearer {SECRET}", None):
            self.send_response(401)
            self.end_headers()
            return
        trace = body["messages"][0]["content"].split("<<<", 1)[1]
        if trace not in FakeJudge.answered_badly:
            FakeJudge.answered_badly.add(trace)
            content = "Sure! I think there are a few."
        else:
            lower = trace.lower()
            count = lower.count("wait") + lower.count("hmm")
            content = "```json\n" + json.dumps({"count": count, "examples": ["wait"] * min(count, 2)}) + "\n```"
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    FakeJudge.seen, FakeJudge.answered_badly = [], set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeJudge)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_parse_judgement():
    assert parse_judgement('x {"count": 3, "examples": ["a"]} y') == {"count": 3, "examples": ["a"]}
    for bad in ("no json", '{"count": -1}', '{"count": "2"}', '{"count": 1, "examples": "a"}'):
        with pytest.raises(ValueError):
            parse_judgement(bad)


def test_judge_cli_real_http(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MY_JUDGE_KEY", SECRET)
    out = tmp_path / "j"
    assert main(["analyze", "judge", str(FIXTURES / "base.jsonl"), "--base-url", server, "--judge-model",
                 "judge-x", "--api-key-env", "MY_JUDGE_KEY", "--limit", "3", "--timeout", "5",
                 "--output-dir", str(out)]) == 0
    assert all(s["path"] == "/v1/chat/completions" for s in FakeJudge.seen)
    assert all(s["auth"] == f"Bearer {SECRET}" and s["body"]["model"] == "judge-x" for s in FakeJudge.seen)
    assert len(FakeJudge.seen) == 6  # 3 responses, each retried once after a reply without JSON
    rows = [json.loads(line) for line in (out / "judge.jsonl").read_text().splitlines()]
    texts = [json.loads(line)["response"].lower() for line in (FIXTURES / "base.jsonl").read_text().splitlines()]
    assert [r["judge_count"] for r in rows] == [t.count("wait") + t.count("hmm") for t in texts[:3]]
    assert (out / "judge_vs_markers.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr()
    everything = printed.out + printed.err + "".join(p.read_text(errors="ignore") for p in out.iterdir()
                                                     if p.suffix in (".jsonl", ".md", ".csv"))
    assert SECRET not in everything


def test_judge_gives_up_and_hides_key(server):
    client = JudgeClient(server, "m", api_key="wrong-key", timeout_s=5, max_retries=3)
    assert "wrong-key" not in repr(client)
    with pytest.raises(JudgeError, match="HTTP 401") as err:
        client.count("wait")
    assert "wrong-key" not in str(err.value)
    assert len(FakeJudge.seen) == 1  # 401 is not retried
    unreachable = JudgeClient("http://127.0.0.1:9/v1", "m", timeout_s=1, max_retries=1)
    with pytest.raises(JudgeError, match="cannot reach"):
        unreachable.count("x")
