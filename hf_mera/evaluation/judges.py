"""QA judges: decide whether a predicted answer matches a correct answer.

`ExactMatchJudge` is the deterministic, offline default. `OpenAIJudge` is the paper's judge (appendix
C.2: GPT-4o mini with the Table 10 prompt) for any OpenAI-compatible `/v1/chat/completions` endpoint
(OpenAI, vLLM, llama.cpp server, …), written on the standard library only.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .answers import exact_match
from .judge_cache import VerdictCache, verdict_cache_key
from .judge_prompt import (
    JUDGE_SYSTEM_PROMPT,
    JUDGE_USER_PROMPT_TEMPLATE,
    build_judge_messages,
    parse_judge_response,
)

logger = logging.getLogger(__name__)

# 408 request timeout, 429 rate limit and any 5xx are transient; other 4xx (401 bad key, 404 wrong URL)
# will not improve by waiting.
_RETRY_STATUS = frozenset({408, 429})


@dataclass(frozen=True)
class Verdict:
    """One judgement.

    Args:
        correct (`bool`): whether the prediction counts as correct.
        score (`float` or `None`): the judge's 0–5 match score, when it gives one.
        raw (`str`): the judge's raw output (for an exact-match judge, a short explanation).
    """

    correct: bool
    score: float | None
    raw: str


@runtime_checkable
class QAJudge(Protocol):
    """Anything with a `name` (recorded in results) and a `judge` method."""

    name: str

    def judge(self, question: str, answer: str, prediction: str) -> Verdict: ...


class ExactMatchJudge:
    """Correct iff `exact_match(prediction, [answer], contains=contains)` (see `normalize_answer`)."""

    def __init__(self, contains: bool = False):
        self.contains = contains
        self.name = "exact_match_contains" if contains else "exact_match"

    def judge(self, question: str, answer: str, prediction: str) -> Verdict:
        correct = exact_match(prediction, [answer], contains=self.contains)
        return Verdict(correct=correct, score=None, raw="match" if correct else "no match")


class OpenAIJudge:
    """The paper's GPT judge over an OpenAI-compatible chat-completions endpoint.

    Each item is sent as Table 10's system + user prompt; the answer is parsed with
    `parse_judge_response`. An answer without a readable `pred` gives `Verdict(correct=False)` and a
    logged warning, never an exception, and is not cached (a re-run asks again). Readable verdicts are
    cached on disk when `cache_dir` is set. Rate limits (429), server errors (5xx), timeouts and
    connection errors are retried with exponential back-off, `backoff · 2^attempt` seconds capped at
    `max_backoff` (or the server's `Retry-After`, if longer); when the retries run out, or the server
    refuses the request (other 4xx, e.g. a bad key), a `RuntimeError` is raised: silently counting such
    items as wrong would corrupt the accuracy.

    Args:
        model (`str`, defaults to `"gpt-4o-mini"`): the judge model; recorded as `name` in results.
        base_url (`str`, defaults to `"https://api.openai.com/v1"`): the API root; `/chat/completions` is
            appended unless already there.
        api_key_env (`str`, defaults to `"OPENAI_API_KEY"`): environment variable holding the key. When it
            is unset no `Authorization` header is sent (local servers need none).
        cache_dir (`str` or `os.PathLike`, *optional*): folder of the verdict cache.
        max_retries (`int`, defaults to 5): retries after the first attempt.
        backoff (`float`, defaults to 1.0): first back-off delay in seconds.
        max_backoff (`float`, defaults to 60.0): longest single delay.
        timeout (`float`, defaults to 60.0): seconds per HTTP request.
        temperature (`float` or `None`, defaults to 0.0): sampling temperature (None: the server's default).
            The paper does not state one; 0 makes verdicts as repeatable as the API allows.
    """

    def __init__(
        self,
        model: str = "gpt-4o-mini",
        base_url: str = "https://api.openai.com/v1",
        api_key_env: str = "OPENAI_API_KEY",
        cache_dir: str | os.PathLike | None = None,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        timeout: float = 60.0,
        temperature: float | None = 0.0,
    ):
        if not model:
            raise ValueError("model must name the judge model, e.g. 'gpt-4o-mini'.")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}.")
        if backoff < 0 or max_backoff < 0:
            raise ValueError(f"backoff and max_backoff must be >= 0, got {backoff} and {max_backoff}.")
        self.model = model
        self.name = model
        base = base_url.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.api_key_env = api_key_env
        self.cache = VerdictCache(cache_dir) if cache_dir is not None else None
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.temperature = temperature
        self.num_requests = 0  # HTTP attempts made, for cost accounting and tests

    def judge(self, question: str, answer: str, prediction: str) -> Verdict:
        key = verdict_cache_key(
            self.model, question, answer, prediction, JUDGE_SYSTEM_PROMPT + JUDGE_USER_PROMPT_TEMPLATE
        )
        if self.cache is not None and (record := self.cache.get(key)) is not None:
            return Verdict(correct=record["correct"], score=record["score"], raw=record["raw"])

        response = self._post(self._payload(question, answer, prediction))
        raw = self._content(response)
        pred, score = parse_judge_response(raw) if raw is not None else (None, None)
        if pred is None:
            logger.warning(
                "Judge %s gave no readable 'pred' for question %r; counting the item as incorrect. Raw: %r",
                self.model,
                question,
                raw if raw is not None else response,
            )
            return Verdict(correct=False, score=score, raw=raw if raw is not None else json.dumps(response))
        verdict = Verdict(correct=pred, score=score, raw=raw)
        if self.cache is not None:
            self.cache.put(
                key,
                {
                    "model": self.model,
                    "question": question,
                    "answer": answer,
                    "prediction": prediction,
                    "correct": verdict.correct,
                    "score": verdict.score,
                    "raw": verdict.raw,
                },
            )
        return verdict

    def _payload(self, question: str, answer: str, prediction: str) -> dict:
        payload = {"model": self.model, "messages": build_judge_messages(question, answer, prediction)}
        if self.temperature is not None:
            payload["temperature"] = self.temperature
        return payload

    @staticmethod
    def _content(response) -> str | None:
        try:
            content = response["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return None
        return content if isinstance(content, str) else None

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        api_key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        return headers

    def _post(self, payload: dict) -> dict:
        # Not huggingface_hub's `http_backoff` (2.x: httpx2 through the hub's shared client), because it
        # cannot keep this behaviour: with HF_HUB_OFFLINE=1 its client refuses every URL, a local vLLM
        # judge in an offline lab included (tests/test_library_parity.py); it sleeps the server's
        # Retry-After + 1 s uncapped by `max_backoff`; it returns a 200 whose body is not JSON instead of
        # retrying it; it cannot count attempts (`num_requests`); and it stamps a hub trace id on requests
        # to third-party servers.
        data = json.dumps(payload).encode("utf-8")
        last_error: Exception | None = None
        for attempt in range(self.max_retries + 1):
            retry_after = None
            request = urllib.request.Request(self.url, data=data, headers=self._headers(), method="POST")
            self.num_requests += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                    return json.loads(reply.read().decode("utf-8"))
            except urllib.error.HTTPError as error:
                if error.code not in _RETRY_STATUS and error.code < 500:
                    detail = error.read().decode("utf-8", "replace")[:300]
                    hint = f" (is ${self.api_key_env} set?)" if error.code in (401, 403) else ""
                    raise RuntimeError(
                        f"Judge endpoint {self.url} refused the request: HTTP {error.code}{hint}: {detail}"
                    ) from error
                last_error, retry_after = error, error.headers.get("Retry-After") if error.headers else None
            # A reply that is not JSON, a dropped connection or a timeout is worth another try.
            except (
                urllib.error.URLError,
                http.client.HTTPException,
                ConnectionError,
                TimeoutError,
                ValueError,
            ) as error:
                last_error = error
            if attempt == self.max_retries:
                break
            delay = min(self.max_backoff, self.backoff * 2**attempt)
            try:
                delay = max(delay, min(self.max_backoff, float(retry_after))) if retry_after else delay
            except ValueError:  # Retry-After may be an HTTP date; the exponential delay stands
                pass
            logger.warning(
                "Judge request failed (%s); retry %d/%d in %.2f s.",
                last_error,
                attempt + 1,
                self.max_retries,
                delay,
            )
            time.sleep(delay)
        raise RuntimeError(
            f"Judge endpoint {self.url} failed after {self.max_retries + 1} attempts: {last_error}"
        ) from last_error


__all__ = ["ExactMatchJudge", "OpenAIJudge", "QAJudge", "Verdict"]
