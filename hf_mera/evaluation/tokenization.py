"""A pure-Python imitation of pycocoevalcap's `PTBTokenizer`, so CIDEr needs no Java.

pycocoevalcap pipes every caption through Stanford CoreNLP 3.4.1's `PTBTokenizer -preserveLines
-lowerCase` and then drops the tokens listed in `PTB_PUNCTUATIONS`. `ptb_tokenize` reproduces that
pipeline for one caption. Like the JFlex lexer it imitates, it scans left to right and at every
position takes the *longest* match among its token rules (ties go to the earlier rule).

What it reproduces (checked against the Java tokenizer in `tests/test_evaluation_cider.py`):
clitics (`dog's` → `dog 's`, `isn't` → `is n't`, `can't` → `ca n't`, `cannot` → `can not`,
`gonna` → `gon na`), punctuation split off words, abbreviations kept whole (`mr.`, `u.s.`, `e.g.`,
single initials like `a.`), numbers (`10,000`, `3.5`, `5:30`, `1/2`), hyphenated and slashed words,
URLs and e-mail addresses, quotes normalised to `` ` `` / `'` / ``` `` ``` / `''`, runs of dots to
`...`, dashes to `--`, brackets to `-lrb-` … (which pycocoevalcap then *keeps*, because it removes the
upper-case `-LRB-` while `-lowerCase` has already lower-cased them), `€` → `$`, `£` → `#`, `½` → `1/2`.

Known differences (rare in captions): a single letter followed by a period ("letter a.") is always kept
as an initial here, while Java sometimes splits it depending on the surrounding sentence; emoticons
(`;)`); characters outside the Basic Multilingual Plane (Java drops them as "untokenizable", so are they
here, but neighbouring tokens may differ); the lexer's more exotic special cases (`p.m.-3`). Java's
extra sentence-final period after some abbreviations is not reproduced; it is removed anyway.
"""

from __future__ import annotations

import re

# pycocoevalcap/tokenizer/ptbtokenizer.py: tokens removed after tokenisation. Kept verbatim, including
# the upper-case bracket tokens that never match lower-cased output.
PTB_PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

# Abbreviations PTBLexer keeps together with their period (a subset of its ABBREV lists that covers
# caption text: titles, months, street/company words, Latin).
_ABBREVIATIONS = (
    "mr|mrs|ms|dr|prof|st|sr|jr|mt|ave|blvd|rd|ft|no|vs|etc|fig|inc|co|corp|ltd|bros|gen|gov|sen|rep|"
    "rev|capt|col|lt|sgt|cpl|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec|mon|tue|wed|thu|fri|sat|"
    "sun|dept|univ|est|approx|esp|al|viz|cf|ca"
)
# Whole words PTBLexer splits in two (its SPLIT rules).
_SPLIT_WORDS = {
    "cannot": ("can", "not"),
    "gonna": ("gon", "na"),
    "gotta": ("got", "ta"),
    "wanna": ("wan", "na"),
    "lemme": ("lem", "me"),
    "gimme": ("gim", "me"),
}
_REDUCED_AUX = r"'(?:s|re|ve|m|ll|d)"
_LETTER = r"[^\W\d_]"
_ALNUM = r"[^\W_]"
_CHAR_MAP = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u201b": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u00ab": '"',
    "\u00bb": '"',
    "\u2026": "...",
    "\u2013": "--",
    "\u2014": "--",
    "\u2015": "--",
    "\u00bd": "1/2",
    "\u00bc": "1/4",
    "\u00be": "3/4",
    "\u20ac": "$",
    "\u00a3": "#",
}

# Token rules, in priority order for ties. Each regex is tried at the current position and the
# longest match wins, as in a JFlex scanner; the rule's name tells `_emit` how to normalise the token.
_RULES: list[tuple[str, re.Pattern]] = [
    ("split_word", re.compile(rf"(?:{'|'.join(_SPLIT_WORDS)})(?!{_ALNUM})", re.I)),
    # A word directly followed by n't loses its final "n" (is|n't, ca|n't, wo|n't). JFlex counts
    # trailing context in the match length, so the rule matches "isn't" whole and the `token` group
    # says which part to emit now.
    ("nt_word", re.compile(rf"(?P<token>{_ALNUM}+?)n't(?!{_ALNUM})", re.I)),
    (
        "url",
        re.compile(
            r"(?:https?|ftp)://[^\s\"'<>()\[\]{}]*[^\s\"'<>()\[\]{}.,;:!?]|www\.[\w-]+(?:\.[\w-]+)+", re.I
        ),
    ),
    ("email", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    (
        "abbrev",
        re.compile(
            rf"(?:{_LETTER}\.){{2,}}|{_LETTER}\.(?!{_ALNUM})|(?:{_ABBREVIATIONS})\.(?!{_ALNUM})", re.I
        ),
    ),
    ("number", re.compile(r"\d+(?:[.,:/]\d+)*")),
    # "5 1/2" is one token whose space PTBLexer turns into a no-break space.
    ("mixed_fraction", re.compile(r"\d+ \d+/\d+(?!\d)")),
    # Irish/French elisions keep their apostrophe (o'clock, o'neil, d'ye, l'amour).
    ("elision", re.compile(rf"[odlj]'{_LETTER}+(?:-{_ALNUM}+)*", re.I)),
    ("y_apostrophe", re.compile(rf"y'(?={_LETTER})", re.I)),
    ("sgml", re.compile(r"</?[A-Za-z][^<>\s]*>")),
    # Words: letters/digits/underscores, joined by single hyphens or slashes; a [.!?] inside a word
    # keeps it whole when a letter follows (dog.i, hi!how), as PTBLexer's WORD does.
    ("word", re.compile(rf"\w+(?:(?:[-/]|[.!?](?={_LETTER}))\w+)*")),
    ("reduced_aux", re.compile(rf"{_REDUCED_AUX}(?!{_ALNUM})", re.I)),
    ("nt", re.compile(rf"n't(?!{_ALNUM})", re.I)),
    # 'n' (rock 'n' roll), 'em, '80s, and the 't of 'tis / 'twas.
    (
        "apostrophe_word",
        re.compile(
            rf"'(?:n'|n(?!{_ALNUM})|em(?!{_ALNUM})|\d\ds?(?!{_ALNUM})|t(?=(?:is|was)(?!{_ALNUM})))", re.I
        ),
    ),
    ("hashtag", re.compile(r"[#@][^\W\d]\w*")),
    ("currency", re.compile(r"(?:us|a|c|hk|nz|s|nt|ca|au)?\$", re.I)),
    ("ellipsis", re.compile(r"\.{3,}")),
    ("dashes", re.compile(r"-{2,}")),
    ("double_quote", re.compile(r"\"|``|''")),
    ("single_quote", re.compile(r"[`']")),
    ("bang", re.compile(r"[!?]+")),
    ("bracket", re.compile(r"[()\[\]{}]")),
    ("symbol", re.compile(r"[^\w\s]")),
]
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}


def _normalise_characters(text: str) -> str:
    # Java sees characters outside the BMP as surrogate pairs it cannot tokenize, and drops them.
    text = "".join(ch for ch in text if ord(ch) <= 0xFFFF)
    return "".join(_CHAR_MAP.get(ch, ch) for ch in text)


def _lex(text: str) -> list[str]:
    """Split one line into PTB tokens (before punctuation removal)."""
    tokens: list[str] = []
    pos, n = 0, len(text)
    while pos < n:
        if text[pos].isspace():
            pos += 1
            continue
        best_name, best_match = None, None
        for name, pattern in _RULES:
            match = pattern.match(text, pos)
            if match and match.end() > pos and (best_match is None or match.end() > best_match.end()):
                best_name, best_match = name, match
        if best_match is None:  # a control or unassigned character: PTBLexer drops it as untokenizable
            pos += 1
            continue
        end = best_match.end("token") if "token" in best_match.re.groupindex else best_match.end()
        tokens.extend(_emit(best_name, text[pos:end], text, pos))
        pos = end
    return tokens


def _emit(name: str, token: str, text: str, start: int) -> list[str]:
    if name == "split_word":
        return list(_SPLIT_WORDS[token.lower()])
    if name == "ellipsis":
        return ["..."]
    if name == "dashes":
        return ["--"]
    if name == "mixed_fraction":
        return [token.replace(" ", "\u00a0")]
    if name == "bracket":
        return [_BRACKETS[token]]
    if name == "double_quote":
        # Opening quote at the start or after a space / opening bracket, closing otherwise.
        return ["``" if start == 0 or text[start - 1].isspace() or text[start - 1] in "([{" else "''"]
    if name == "single_quote":
        return ["`" if start == 0 or text[start - 1].isspace() or text[start - 1] in "([{" else "'"]
    return [token]


def ptb_tokenize(text: str) -> str:
    """Tokenize one caption the way pycocoevalcap's `PTBTokenizer` does, without Java.

    Args:
        text (`str`): a raw caption or prediction; newlines count as spaces (pycocoevalcap replaces them).

    Returns:
        `str`: lower-cased tokens joined by single spaces, with the tokens in `PTB_PUNCTUATIONS` removed.
    """
    if not isinstance(text, str):
        raise ValueError(f"ptb_tokenize expects a str, got {type(text).__name__}.")
    text = _normalise_characters(text.replace("\n", " "))
    tokens = (token.lower() for token in _lex(text))
    return " ".join(token for token in tokens if token not in PTB_PUNCTUATIONS)


def ptb_tokenize_raw(text: str) -> list[str]:
    """The lower-cased PTB tokens of `text` *before* punctuation removal (for debugging and tests)."""
    return [token.lower() for token in _lex(_normalise_characters(text.replace("\n", " ")))]


__all__ = ["PTB_PUNCTUATIONS", "ptb_tokenize", "ptb_tokenize_raw"]
