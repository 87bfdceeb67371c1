"""The paper's GPT judge: Table 10 prompt, response parsing, HTTP retries and the verdict cache.

`OpenAIJudge` talks to a tiny OpenAI-compatible server started on 127.0.0.1 inside the test.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hf_mera.evaluation import (
    JUDGE_SYSTEM_PROMPT,
    JUDGE_USER_PROMPT_TEMPLATE,
    OpenAIJudge,
    QAJudge,
    build_judge_messages,
    parse_judge_response,
    qa_accuracy,
)

# Table 10 of the paper, as typeset (whitespace collapsed).
TABLE_10_SYSTEM = (
    "You are an intelligent chatbot designed for evaluating the correctness of generative outputs for "
    "question-answer pairs. Your task is to compare the predicted answer with the correct answer and determine "
    "if they match meaningfully. Here’s how you can accomplish the task: ##INSTRUCTIONS: - Focus on the "
    "meaningful match between the predicted answer and the correct answer. - Consider synonyms or paraphrases "
    "as valid matches. - Evaluate the correctness of the prediction compared to the answer."
)
TABLE_10_USER = (
    "Please evaluate the following question-answer pair: Question: <question> Correct Answer: <answer> "
    "Predicted Answer: <prediction> Provide your evaluation only as a yes/no and score where the score is an "
    "integer value between 0 and 5, with 5 indicating the highest meaningful match. Please generate the response "
    "in the form of a Python dictionary string with keys 'pred' and 'score', where value of 'pred' is a string "
    "of 'yes' or 'no' and value of 'score' is in INTEGER, not STRING.DO NOT PROVIDE ANY OTHER OUTPUT TEXT OR "
    "EXPLANATION. Only provide the Python dictionary string. For example, your response should look like this: "
    "{'pred': 'yes', 'score': 4.8}."
)


def _collapse(text):
    return " ".join(text.split())


def test_prompts_are_table_10_verbatim():
    messages = build_judge_messages("<question>", "<answer>", "<prediction>")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == JUDGE_SYSTEM_PROMPT
    assert _collapse(messages[0]["content"]) == TABLE_10_SYSTEM
    assert _collapse(messages[1]["content"]) == TABLE_10_USER
    assert "{question}" in JUDGE_USER_PROMPT_TEMPLATE


@pytest.mark.parametrize(
    ("raw", "pred", "score"),
    [
        ("{'pred': 'yes', 'score': 4}", True, 4.0),
        ('{"pred": "no", "score": 1}', False, 1.0),
        ("{'pred': 'yes', 'score': 4.8}", True, 4.8),
        ("{'pred': 'Yes', 'score': '5'}", True, 5.0),
        ("```python\n{'pred': 'no', 'score': 0}\n```", False, 0.0),
        ('```json\n{"pred": "yes", "score": 3}\n```', True, 3.0),
        ("Sure! Here is my evaluation: {'pred': 'yes', 'score': 5} Hope this helps.", True, 5.0),
        ("{'Pred': 'NO', 'Score': 2}", False, 2.0),
        ("{'pred': True, 'score': 4}", True, 4.0),
        ("{'pred': 'yes', 'score': 'high'}", True, None),
        ("{'pred': 'yes'}", True, None),
        ("pred: yes, score: 4", True, 4.0),
        ("{'pred': 'yes', 'score': 4", True, 4.0),  # truncated dict: the key-value fallback reads it
        ("I cannot judge this.", None, None),
        ("{'pred': 'maybe', 'score': 3}", None, 3.0),
        ("", None, None),
        (None, None, None),
    ],
)
def test_parse_judge_response(raw, pred, score):
    assert parse_judge_response(raw) == (pred, score)


class _Handler(BaseHTTPRequestHandler):
    """OpenAI-compatible `/v1/chat/completions`; the question text selects the behaviour."""

    def log_message(self, *args):  # keep test output clean
        pass

    def do_POST(self):
        server = self.server
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length))
        question = body["messages"][1]["content"].split("Question: ", 1)[1].split("\n", 1)[0]
        with server.lock:
            server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            attempt = server.attempts.get(question, 0)
            server.attempts[question] = attempt + 1
            if len(server.requests) > 100:  # a runaway retry loop must not spin forever
                return self._send(500, b"too many requests in this test")
        if question == "flaky" and attempt == 0:
            return self._send(500, b"internal error")
        if question == "rate limited" and attempt == 0:
            return self._send(429, b"slow down", {"Retry-After": "0"})
        if question == "not json" and attempt == 0:
            return self._send(200, b"<html>gateway hiccup</html>")
        if question == "down":
            return self._send(503, b"unavailable")
        if question == "no choices":
            return self._send(200, b'{"error": {"message": "content filtered"}}')
        if question == "unauthorized":
            return self._send(401, b'{"error": "bad key"}')
        content = {
            "malformed": "I am not sure what you mean.",
            "wrong": "{'pred': 'no', 'score': 1}",
            "fenced": '```json\n{"pred": "yes", "score": "4"}\n```',
        }.get(question, "{'pred': 'yes', 'score': 5}")
        reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
        self._send(200, json.dumps(reply).encode(), {"Content-Type": "application/json"})

    def _send(self, status, payload, headers=None):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.requests, httpd.attempts, httpd.lock = [], {}, threading.Lock()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _judge(server, tmp_path, **kwargs):
    options = dict(
        model="judge-test-model",
        base_url=f"http://127.0.0.1:{server.server_address[1]}/v1",
        api_key_env="HF_MERA_TEST_JUDGE_KEY",
        cache_dir=tmp_path / "cache",
        max_retries=2,
        backoff=0.001,
        timeout=5,
    )
    options.update(kwargs)
    return OpenAIJudge(**options)


def test_openai_judge_sends_table_10_prompt_and_reads_verdict(server, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_MERA_TEST_JUDGE_KEY", "test-key")
    judge = _judge(server, tmp_path)
    assert isinstance(judge, QAJudge)
    verdict = judge.judge("good", "a red square", "red square")
    assert verdict.correct and verdict.score == 5.0 and verdict.raw == "{'pred': 'yes', 'score': 5}"
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer test-key"
    assert request["body"]["model"] == "judge-test-model"
    assert request["body"]["temperature"] == 0.0
    assert request["body"]["messages"] == build_judge_messages("good", "a red square", "red square")


def test_openai_judge_without_key_sends_no_authorization(server, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_MERA_TEST_JUDGE_KEY", raising=False)
    assert _judge(server, tmp_path).judge("good", "a", "a").correct
    assert "Authorization" not in server.requests[0]["headers"]


def test_openai_judge_cache_prevents_a_second_request(server, tmp_path):
    judge = _judge(server, tmp_path)
    first = judge.judge("fenced", "four", "4")
    assert first.correct and first.score == 4.0
    assert len(server.requests) == 1
    assert judge.judge("fenced", "four", "4") == first
    assert len(server.requests) == 1
    # A new judge on the same cache folder (a re-run) also asks nothing.
    assert _judge(server, tmp_path).judge("fenced", "four", "4") == first
    assert len(server.requests) == 1
    # The key includes the judge model: another model asks again.
    _judge(server, tmp_path, model="other-model").judge("fenced", "four", "4")
    assert len(server.requests) == 2


def test_openai_judge_malformed_answer_is_incorrect_with_warning_and_not_cached(server, tmp_path, caplog):
    judge = _judge(server, tmp_path)
    with caplog.at_level("WARNING", logger="hf_mera.evaluation.judges"):
        verdict = judge.judge("malformed", "yes", "yes")
    assert verdict.correct is False and verdict.score is None
    assert verdict.raw == "I am not sure what you mean."
    assert "no readable 'pred'" in caplog.text
    judge.judge("malformed", "yes", "yes")
    assert len(server.requests) == 2  # asked again: an unreadable answer is not a verdict to keep


def test_openai_judge_reply_without_choices_is_incorrect_not_a_crash(server, tmp_path):
    verdict = _judge(server, tmp_path).judge("no choices", "a", "a")
    assert verdict.correct is False and verdict.score is None
    assert "content filtered" in verdict.raw


@pytest.mark.parametrize("question", ["flaky", "rate limited", "not json"])
def test_openai_judge_retries_transient_failures(server, tmp_path, question):
    judge = _judge(server, tmp_path)
    verdict = judge.judge(question, "a", "a")
    assert verdict.correct
    assert server.attempts[question] == 2
    assert judge.num_requests == 2


def test_openai_judge_gives_up_after_max_retries(server, tmp_path):
    judge = _judge(server, tmp_path, max_retries=2)
    with pytest.raises(RuntimeError, match="after 3 attempts"):
        judge.judge("down", "a", "a")
    assert server.attempts["down"] == 3


def test_openai_judge_does_not_retry_client_errors(server, tmp_path):
    judge = _judge(server, tmp_path)
    with pytest.raises(RuntimeError, match="HTTP 401.*HF_MERA_TEST_JUDGE_KEY"):
        judge.judge("unauthorized", "a", "a")
    assert server.attempts["unauthorized"] == 1


def test_openai_judge_retries_connection_errors_then_raises(tmp_path):
    # Bind and close a socket to get a port nobody listens on.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    judge = OpenAIJudge(
        model="m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, backoff=0.001, timeout=2
    )
    with pytest.raises(RuntimeError, match="after 2 attempts"):
        judge.judge("q", "a", "p")
    assert judge.num_requests == 2


def test_qa_accuracy_records_the_judge_model(server, tmp_path):
    judge = _judge(server, tmp_path)
    result = qa_accuracy(
        ["red", "blue", "?"], [["red"], ["green"], ["x"]], ["good", "wrong", "malformed"], judge
    )
    assert result.judge_name == "judge-test-model"
    assert result.per_item == [True, False, False]
    assert result.accuracy == pytest.approx(1 / 3)
    assert result.mean_score == pytest.approx(3.0)  # scores 5 and 1; the malformed answer has none


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"model": ""}, "model"), ({"max_retries": -1}, "max_retries"), ({"backoff": -1.0}, "backoff")],
)
def test_openai_judge_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OpenAIJudge(**kwargs)


def test_stage_evaluator_builds_the_judge_named_in_the_run():
    """`evaluation.judge` is looked up in `JUDGES`; a typo names the field and the known judges."""
    from types import SimpleNamespace

    from hf_mera.evaluation import ExactMatchJudge
    from trainers.evaluation import StageEvaluator

    def evaluator(judge):
        settings = SimpleNamespace(judge=judge, judge_kwargs={})
        return StageEvaluator(SimpleNamespace(run=SimpleNamespace(evaluation=settings)))

    assert isinstance(evaluator("exact_match").judge(), ExactMatchJudge)
    with pytest.raises(
        ValueError, match=r"^evaluation\.judge: unknown judge 'gpt'; known: \['exact_match', 'openai'\]"
    ):
        evaluator("gpt").judge()
