"""CIDEr-D and the PTB tokenizer against pycocoevalcap (pure-Python CIDEr; Java tokenizer when present)."""

import random
import shutil

import pytest

from hf_mera.evaluation import CIDER_METRIC_PATH, compute_cider, ptb_tokenize

VOCAB = (
    "a an the man woman dog cat two three red blue green small large sitting standing riding on in near "
    "with of top table street car bus surfboard wave field grass kitchen plate pizza white black young"
).split()


def _corpus(num_items=30, num_refs=5, seed=0):
    """Deterministic captions; references share a per-item "topic" so IDF and overlap are both non-trivial."""
    rng = random.Random(seed)
    predictions, references = [], []
    for _ in range(num_items):
        topic = rng.sample(VOCAB, 6)

        def caption(length, topic=topic):
            return " ".join(
                rng.choice(topic) if rng.random() < 0.6 else rng.choice(VOCAB) for _ in range(length)
            )

        references.append([caption(rng.randint(5, 12)) for _ in range(num_refs)])
        predictions.append(caption(rng.randint(3, 14)))
    return predictions, references


def _pycocoevalcap_cider(predictions, references):
    from pycocoevalcap.cider.cider import Cider

    score, scores = Cider().compute_score(
        {i: list(refs) for i, refs in enumerate(references)}, {i: [p] for i, p in enumerate(predictions)}
    )
    return 100 * float(score), [100 * float(s) for s in scores]


def test_cider_equals_pycocoevalcap_on_many_references():
    predictions, references = _corpus()
    expected_score, expected_items = _pycocoevalcap_cider(predictions, references)
    result = compute_cider(predictions, references, tokenize=False)
    assert expected_score > 1.0  # a corpus with real overlap, not a trivial zero
    assert result.score == pytest.approx(expected_score, abs=1e-6)
    assert result.per_item == pytest.approx(expected_items, abs=1e-6)
    assert len({round(s, 6) for s in result.per_item}) > 20  # items really differ


def test_cider_equals_pycocoevalcap_with_varied_reference_counts_and_exact_copies():
    predictions, references = _corpus(num_items=25, num_refs=3, seed=3)
    references = [
        refs[: 1 + i % 3] + [f"extra caption number {i}"] * (i % 2) for i, refs in enumerate(references)
    ]
    predictions[0] = references[0][0]  # a perfect copy of one reference
    predictions[1] = ""  # an empty prediction scores 0, it does not crash
    expected_score, expected_items = _pycocoevalcap_cider(predictions, references)
    result = compute_cider(predictions, references, tokenize=False)
    assert result.score == pytest.approx(expected_score, abs=1e-6)
    assert result.per_item == pytest.approx(expected_items, abs=1e-6)
    assert result.per_item[1] == 0.0
    assert result.per_item[0] == max(result.per_item)


def test_cider_tokenizes_raw_captions_like_pycocoevalcap():
    predictions, references = _corpus(seed=1)
    raw_predictions = [p.capitalize() + "." for p in predictions]
    raw_references = [[r.upper().replace(" ", ", ", 1) + "!" for r in refs] for refs in references]
    expected_score, _ = _pycocoevalcap_cider(
        [ptb_tokenize(p) for p in raw_predictions],
        [[ptb_tokenize(r) for r in refs] for refs in raw_references],
    )
    assert compute_cider(raw_predictions, raw_references).score == pytest.approx(expected_score, abs=1e-6)
    # Case and punctuation are normalised away, so the raw captions score like the clean ones.
    assert compute_cider(raw_predictions, raw_references).score == pytest.approx(
        compute_cider(predictions, references, tokenize=False).score, abs=1e-9
    )


def test_single_item_corpus_scores_zero_because_idf_needs_a_corpus():
    assert compute_cider(["a dog"], [["a dog", "the dog"]]).score == 0.0


@pytest.mark.parametrize(
    ("predictions", "references", "message"),
    [
        (["a"], [["a"], ["b"]], "differ in length"),
        ([], [], "empty"),
        (["a", "b"], [["a"], []], r"references\[1\]"),
        (["a", "b"], [["a"], "b"], r"references\[1\]"),
        (["a", 3], [["a"], ["b"]], r"predictions\[1\]"),
        (["a", "b"], [["a"], ["b", None]], r"references\[1\]\[1\]"),
        ("a dog", [["a dog"]], "not a single str"),
    ],
)
def test_cider_rejects_bad_input_naming_the_item(predictions, references, message):
    with pytest.raises(ValueError, match=message):
        compute_cider(predictions, references)


# Expected outputs produced by pycocoevalcap's Java PTBTokenizer (CoreNLP 3.4.1) + its punctuation removal.
PTB_GOLDEN = [
    ("A man riding a wave on top of a surfboard.", "a man riding a wave on top of a surfboard"),
    (
        "The dog's ball isn't red; it's \"blue\" (mostly).",
        "the dog 's ball is n't red it 's blue -lrb- mostly -rrb-",
    ),
    (
        "I can't believe they're gonna win -- it's 3.5 times better!!!",
        "i ca n't believe they 're gon na win it 's 3.5 times better !!!",
    ),
    (
        "Two people... standing near a 1/2 price sign & a $5 bill, e.g. at U.S. stores.",
        "two people standing near a 1/2 price sign & a $ 5 bill e.g. at u.s. stores",
    ),
    (
        "She said 'hello' and he'd left. We'll see, won't we? I'm sure you've seen it.",
        "she said hello and he 'd left we 'll see wo n't we i 'm sure you 've seen it",
    ),
    (
        "A black-and-white photo of Mr. Smith's cat [on the mat] {with toys}.",
        "a black-and-white photo of mr. smith 's cat -lsb- on the mat -rsb- -lcb- with toys -rcb-",
    ),
    (
        "cannot wanna gotta lemme  d'ye   'tis  o'clock rock'n'roll ",
        "can not wan na got ta lem me d'ye 't is o'clock rock 'n' roll",
    ),
    (
        "Email me at foo@bar.com or visit http://www.example.com/page now.",
        "email me at foo@bar.com or visit http://www.example.com/page now",
    ),
    (
        "He scored 10,000 points at 5:30 pm, i.e., 100% of 1.5m.",
        "he scored 10,000 points at 5:30 pm i.e. 100 % of 1.5 m.",
    ),
    (
        '"Quoted start and end" `backtick\' ‘curly’ “double curly” — em-dash – en-dash … ellipsis',
        "quoted start and end backtick curly double curly em-dash en-dash ellipsis",
    ),
    (
        "A man's 90's style jeans; the boys' toys; O'Neil's bar. etc.",
        "a man 's 90 's style jeans the boys toys o'neil 's bar etc.",
    ),
    ("Hi!How are you?Fine.Thanks", "hi!how are you?fine.thanks"),
    ("the U.S. flag waves.", "the u.s. flag waves"),
    ("dr. who and st. louis in jan. at the inc. co.", "dr. who and st. louis in jan. at the inc. co."),
    ("end with 5.5.", "end with 5.5"),
    ("what?! no!? yes.", "what ?! no !? yes"),
    ("$100 and US$5 and #1 and 50%", "$ 100 and us$ 5 and # 1 and 50 %"),
    ("there's a cat's; y'all ain't", "there 's a cat 's y' all ai n't"),
    ("doesn't won't shan't can't cannot couldn't", "does n't wo n't sha n't ca n't can not could n't"),
    ("1.5m and 5kg and 3d and 2nd and 1.5m", "1.5 m and 5kg and 3d and 2nd and 1.5 m"),
    ("he is ok. ok.", "he is ok ok"),
    ("he's 6'2\" tall", "he 's 6 2 tall"),
    ("a/b and/or 1/2 w/", "a/b and/or 1/2 w /"),
    ("a&b at&t", "a & b at & t"),
    ("wait.... what---no - yes -- ok ---", "wait what no yes ok"),
    ("25° © ™ € £5 ¥ § ½ • · × a°b", "25 ° © ™ $ # 5 ¥ § 1/2 • · × a ° b"),
    ("they'd've gone y'know", "they 'd 've gone y' know"),
    ("don't DON'T Don't O'NEIL'S", "do n't do n't do n't o'neil 's"),
    ("a 100-m race and 1st-place trophy", "a 100-m race and 1st-place trophy"),
    ("they're '90s fans", "they 're '90s fans"),
    ("a_b snake_case x+y", "a_b snake_case x + y"),
    ("a sign with the letter A.", "a sign with the letter a."),
    ("it is 2 o'clock and 6 ft. tall", "it is 2 o'clock and 6 ft. tall"),
    ("surfboard $5 1/2 off", "surfboard $ 5\u00a01/2 off"),
    (
        "tab\tseparated   spaces and *stars* and #hash @at ~tilde <lt> |pipe",
        "tab separated spaces and * stars * and #hash @at ~ tilde <lt> | pipe",
    ),
    ("a line\nbreak", "a line break"),
]


@pytest.mark.parametrize(("text", "expected"), PTB_GOLDEN)
def test_ptb_tokenize_matches_java_tokenizer_outputs(text, expected):
    assert ptb_tokenize(text) == expected


def _fuzz_captions(count=400, seed=11):
    """Caption-like lines mixing words with punctuation, clitics, numbers, abbreviations and quotes."""
    rng = random.Random(seed)
    extras = (
        "dog's isn't can't won't they're it's we'll I'm you've he'd cannot gonna o'clock black-and-white "
        "5-year-old 3.5 10,000 1/2 5:30 Mr. Dr. U.S. e.g. etc. ( ) [ ] \" ' , . ; : ! ? ... -- - & % $5 #1 "
        "2nd 80s '80s boys' 'em re-enter and/or tv. ok. !! ?! 'tis y'all ain't it. dog. 1.5m * + = e-mail "
        "well... A The Man NYC Don't"
    ).split()
    attachable = {",", ".", ";", ":", "!", "?", ")", "]", "'", '"', "..."}
    lines = []
    for _ in range(count):
        tokens = [
            rng.choice(extras) if rng.random() < 0.3 else rng.choice(VOCAB) for _ in range(rng.randint(3, 16))
        ]
        line = ""
        for token in tokens:
            line += ("" if token in attachable and rng.random() < 0.3 else " ") + token
        lines.append(line.strip())
    return lines


@pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap's PTBTokenizer needs Java")
def test_ptb_tokenize_matches_live_java_tokenizer_on_fuzzed_captions():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    lines = _fuzz_captions() + [text for text, _ in PTB_GOLDEN if "\n" not in text]
    java = PTBTokenizer().tokenize({i: [{"caption": line}] for i, line in enumerate(lines)})
    mismatches = [
        (line, java[i][0], ptb_tokenize(line))
        for i, line in enumerate(lines)
        if java[i][0] != ptb_tokenize(line)
    ]
    assert not mismatches, mismatches[:5]


def test_ptb_tokenize_rejects_non_strings():
    with pytest.raises(ValueError, match="expects a str"):
        ptb_tokenize(None)


def test_cider_evaluate_module_loads_offline_and_matches(tmp_path, monkeypatch):
    evaluate = pytest.importorskip("evaluate")
    # Keep the copied module out of the user's cache and never ask the hub.
    monkeypatch.setattr(evaluate.config, "HF_MODULES_CACHE", tmp_path / "modules")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    metric = evaluate.load(CIDER_METRIC_PATH)
    predictions, references = _corpus(num_items=12, seed=5)
    result = metric.compute(predictions=predictions, references=references)
    expected = compute_cider(predictions, references)
    assert result["cider"] == pytest.approx(expected.score, abs=1e-9)
    assert result["cider_per_item"] == pytest.approx(expected.per_item, abs=1e-9)
    assert result["cider"] > 1.0
