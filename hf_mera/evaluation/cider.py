"""CIDEr-D (Vedantam et al., 2015) as computed by pycocoevalcap's `Cider`, in pure Python.

The paper (appendix C.2) scores captions with CaptionMetrics, a wrapper of pycocoevalcap, and prints
CIDEr ×100 (e.g. 100.76 on MSCOCO). `compute_cider` returns the same quantity on the same scale.

For an item with candidate c and references {r_1 … r_m}, over a corpus of N items:

    g_n(s)[w]     = tf_s(w) · (log N − log max(1, df(w)))           tf-idf of n-gram w, df over references
    sim_n(c, r)   = Σ_w min(g_n(c)[w], g_n(r)[w]) · g_n(r)[w] / (‖g_n(c)‖ ‖g_n(r)‖)   "clipping"
                    · exp(−(ℓ(c) − ℓ(r))² / (2 σ²))                  Gaussian length penalty
    CIDEr-D(c)    = 10 · (1/n_max) Σ_{n=1..n_max} (1/m) Σ_j sim_n(c, r_j)

with n_max = `n` (4) and σ = `sigma` (6). Two details follow pycocoevalcap exactly because published
numbers depend on them: ℓ(s) counts the *bigrams* of s (its `length` counter increments for n-gram
index 1), and the corpus score is the plain mean of the item scores. IDF comes from the references
of the whole corpus, so a corpus of one item scores 0 (log N = 0); score whole test sets at once.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from .tokenization import ptb_tokenize


@dataclass
class CiderResult:
    """CIDEr-D of a corpus, on the paper's scale (pycocoevalcap's value × 100).

    Args:
        score (`float`): corpus CIDEr-D × 100, the mean of `per_item`.
        per_item (`list[float]`): CIDEr-D × 100 of each prediction, in input order.
    """

    score: float
    per_item: list[float]


def _ngram_counts(sentence: str, n: int) -> Counter:
    words = sentence.split()
    return Counter(tuple(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


def _tfidf(counts: Counter, document_frequency: Counter, log_corpus_size: float, n: int):
    """Per n-gram order: tf-idf vector, its L2 norm; plus the bigram count used as "length"."""
    vectors = [{} for _ in range(n)]
    squared_norms = [0.0] * n
    length = 0
    for ngram, term_frequency in counts.items():
        order = len(ngram) - 1
        weight = float(term_frequency) * (log_corpus_size - math.log(max(1.0, document_frequency[ngram])))
        vectors[order][ngram] = weight
        squared_norms[order] += weight**2
        if order == 1:  # pycocoevalcap counts bigrams as the sentence length; kept for equal scores
            length += term_frequency
    return vectors, [math.sqrt(s) for s in squared_norms], length


def _similarity(candidate, reference, n: int, sigma: float) -> list[float]:
    vec_c, norm_c, len_c = candidate
    vec_r, norm_r, len_r = reference
    penalty = math.e ** (-(float(len_c - len_r) ** 2) / (2 * sigma**2))
    values = []
    for order in range(n):
        # Clipping: a candidate n-gram earns at most the reference's weight for it.
        value = sum(
            min(w, vec_r[order].get(g, 0.0)) * vec_r[order].get(g, 0.0) for g, w in vec_c[order].items()
        )
        if norm_c[order] != 0 and norm_r[order] != 0:
            value /= norm_c[order] * norm_r[order]
        values.append(value * penalty)
    return values


def _validate(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if isinstance(predictions, str) or isinstance(references, str):
        raise ValueError("predictions and references must be lists (one entry per item), not a single str.")
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions and references differ in length: {len(predictions)} predictions, "
            f"{len(references)} reference lists."
        )
    if not predictions:
        raise ValueError("predictions is empty: CIDEr needs at least one item.")
    for index, (prediction, refs) in enumerate(zip(predictions, references)):
        if not isinstance(prediction, str):
            raise ValueError(f"predictions[{index}] must be a str, got {type(prediction).__name__}.")
        if isinstance(refs, str) or not refs:
            raise ValueError(f"references[{index}] must be a non-empty list of str, got {refs!r}.")
        for ref_index, ref in enumerate(refs):
            if not isinstance(ref, str):
                raise ValueError(f"references[{index}][{ref_index}] must be a str, got {type(ref).__name__}.")


def compute_cider(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    tokenize: bool = True,
    n: int = 4,
    sigma: float = 6.0,
) -> CiderResult:
    """CIDEr-D of `predictions` against `references`, ×100 (the paper's scale).

    Args:
        predictions (`list[str]`): one generated caption per item.
        references (`list[list[str]]`): the reference captions of each item (the set of all items'
            references is also the IDF corpus).
        tokenize (`bool`, defaults to `True`): run `ptb_tokenize` (pycocoevalcap's PTB tokenisation, no Java)
            on predictions and references first; pass `False` for text that is already tokenised.
        n (`int`, defaults to 4): largest n-gram order (n_max above).
        sigma (`float`, defaults to 6.0): width σ of the Gaussian length penalty.

    Returns:
        [`CiderResult`]: the corpus score and the per-item scores, both ×100.

    Raises:
        `ValueError`: lengths differ, the corpus is empty, an item has no references, or an entry is not a str.
    """
    _validate(predictions, references)
    if tokenize:
        predictions = [ptb_tokenize(p) for p in predictions]
        references = [[ptb_tokenize(r) for r in refs] for refs in references]

    candidate_counts = [_ngram_counts(p, n) for p in predictions]
    reference_counts = [[_ngram_counts(r, n) for r in refs] for refs in references]
    # Document frequency: in how many items' reference sets an n-gram occurs at least once.
    document_frequency = Counter(
        ngram for refs in reference_counts for ngram in set().union(*(c.keys() for c in refs))
    )
    log_corpus_size = math.log(float(len(reference_counts)))

    per_item = []
    for cand, refs in zip(candidate_counts, reference_counts):
        cand_vec = _tfidf(cand, document_frequency, log_corpus_size, n)
        totals = [0.0] * n
        for ref in refs:
            sims = _similarity(cand_vec, _tfidf(ref, document_frequency, log_corpus_size, n), n, sigma)
            totals = [t + s for t, s in zip(totals, sims)]
        # Mean over n-gram orders, then over references, then ×10 (pycocoevalcap) and ×100 (paper).
        per_item.append(sum(totals) / n / len(refs) * 10.0 * 100.0)
    return CiderResult(score=sum(per_item) / len(per_item), per_item=per_item)


__all__ = ["CiderResult", "compute_cider"]
