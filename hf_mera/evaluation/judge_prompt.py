"""The paper's GPT judge prompt (Table 10) and a robust parser for the judge's answer.

Words and punctuation are verbatim from Table 10. Typesetting turns line breaks into spaces, so the
line breaks are restored as in Video-ChatGPT's QA-evaluation template, from which this prompt derives
(the double spaces in the typeset user prompt mark its blank lines). Collapsing whitespace gives
Table 10's text exactly; `tests/test_evaluation_judges.py` checks that.
"""

from __future__ import annotations

import ast
import json
import re

JUDGE_SYSTEM_PROMPT = (
    "You are an intelligent chatbot designed for evaluating the correctness of generative outputs for "
    "question-answer pairs. Your task is to compare the predicted answer with the correct answer and "
    "determine if they match meaningfully. Here’s how you can accomplish the task:\n"
    "##INSTRUCTIONS:\n"
    "- Focus on the meaningful match between the predicted answer and the correct answer.\n"
    "- Consider synonyms or paraphrases as valid matches.\n"
    "- Evaluate the correctness of the prediction compared to the answer."
)

JUDGE_USER_PROMPT_TEMPLATE = (
    "Please evaluate the following question-answer pair:\n\n"
    "Question: {question}\n"
    "Correct Answer: {answer}\n"
    "Predicted Answer: {prediction}\n\n"
    "Provide your evaluation only as a yes/no and score where the score is an integer value between 0 "
    "and 5, with 5 indicating the highest meaningful match. Please generate the response in the form of "
    "a Python dictionary string with keys 'pred' and 'score', where value of 'pred' is a string of 'yes' "
    "or 'no' and value of 'score' is in INTEGER, not STRING.DO NOT PROVIDE ANY OTHER OUTPUT TEXT OR "
    "EXPLANATION. Only provide the Python dictionary string. For example, your response should look "
    "like this: {{'pred': 'yes', 'score': 4.8}}."
)

_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.S)
_BRACES = re.compile(r"\{.*?\}", re.S)
_PRED = re.compile(r"""['"]?pred['"]?\s*[:=]\s*['"]?\s*(yes|no|true|false)\b""", re.I)
_SCORE = re.compile(r"""['"]?score['"]?\s*[:=]\s*['"]?\s*(-?\d+(?:\.\d+)?)""", re.I)


def build_judge_messages(question: str, answer: str, prediction: str) -> list[dict[str, str]]:
    """The chat messages (system + user) that ask the judge about one item, as in Table 10."""
    user = JUDGE_USER_PROMPT_TEMPLATE.format(question=question, answer=answer, prediction=prediction)
    return [{"role": "system", "content": JUDGE_SYSTEM_PROMPT}, {"role": "user", "content": user}]


def _as_pred(value) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().strip(".").lower()
        if word in ("yes", "true"):
            return True
        if word in ("no", "false"):
            return False
    return None


def _as_score(value) -> float | None:
    if isinstance(value, bool):  # bool is an int subclass; True is not a score
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _parse_dict(candidate: str) -> dict | None:
    # The prompt asks for a *Python* dict string (single quotes), but models also answer with JSON.
    for loader in (ast.literal_eval, json.loads):
        try:
            value = loader(candidate)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, dict):
            return {str(k).strip().lower(): v for k, v in value.items()}
    return None


def parse_judge_response(text: str) -> tuple[bool | None, float | None]:
    """Read `(pred, score)` from a judge's answer; `None` for what cannot be read.

    Accepts the requested Python dict string (`{'pred': 'yes', 'score': 4}`), JSON, either wrapped in
    code fences or surrounded by other text, `pred` as yes/no/true/false in any case, and `score` as an
    int, a float or a numeric string. Falls back to a key-value regex when no dict literal parses.
    """
    if not isinstance(text, str):
        return None, None
    fenced = _FENCE.findall(text)
    for block in [*fenced, text]:
        for candidate in [block.strip(), *_BRACES.findall(block)]:
            parsed = _parse_dict(candidate)
            if parsed is not None and "pred" in parsed:
                return _as_pred(parsed["pred"]), _as_score(parsed.get("score"))
    pred_match, score_match = _PRED.search(text), _SCORE.search(text)
    pred = _as_pred(pred_match.group(1)) if pred_match else None
    score = float(score_match.group(1)) if score_match else None
    return pred, score


__all__ = [
    "JUDGE_SYSTEM_PROMPT",
    "JUDGE_USER_PROMPT_TEMPLATE",
    "build_judge_messages",
    "parse_judge_response",
]
