"""Word error rate (alignment counts, corpus WER) and Whisper's English normalizer."""

from __future__ import annotations

import json
import random
from importlib import resources

import pytest

from pytest_lmms.scoring import (
    align_words,
    corpus_wer,
    normalize_basic,
    normalize_english,
    standardize_numbers,
    standardize_spellings,
    word_error_rate,
    word_errors,
)

# --- alignment ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "hypothesis", "hits_subs_dels_ins"),
    [
        ("the cat sat", "the cat sat", (3, 0, 0, 0)),
        ("the cat sat", "the dog sat", (2, 1, 0, 0)),
        ("the cat sat on the mat", "the cat sat on mat", (5, 0, 1, 0)),
        ("hello world", "hello there world", (2, 0, 0, 1)),
        ("a b c", "", (0, 0, 3, 0)),
        ("", "a b", (0, 0, 0, 2)),
        ("", "", (0, 0, 0, 0)),
        # two substitutions or a deletion, a hit and an insertion: both cost 2; most hits wins
        ("c a", "b c", (1, 0, 1, 1)),
        ("turnips and carrots", "turnips carrots and", (2, 0, 1, 1)),
    ],
)
def test_alignment_counts(
    reference: str, hypothesis: str, hits_subs_dels_ins: tuple[int, int, int, int]
) -> None:
    alignment = align_words(reference, hypothesis)
    counts = (alignment.hits, alignment.substitutions, alignment.deletions, alignment.insertions)
    assert counts == hits_subs_dels_ins
    assert alignment.reference_words == len(reference.split())


def test_words_can_be_given_as_lists_and_case_counts() -> None:
    assert word_errors(["The", "cat"], ["the", "cat"]) == (1, 2)  # normalizing is the caller's job
    assert word_errors("a  b\tc\n", "a b c") == (0, 3)


def test_word_error_rate_of_one_utterance() -> None:
    assert word_error_rate("a b c d", "a x c") == pytest.approx(2 / 4)
    assert word_error_rate("a b", "a b c d e") == pytest.approx(3 / 2)  # insertions can pass 100%
    with pytest.raises(ValueError, match="empty reference"):
        word_error_rate("", "a")


def test_corpus_wer_sums_errors_over_words_not_mean_of_rates() -> None:
    references = ["a b c d e f g h", "a b c", "a b"]
    hypotheses = ["a b c d e f g h", "a c b", ""]
    # errors 0, 2, 2 over 8, 3, 2 words: 4/13, whereas the mean of the rates is (0 + 2/3 + 1)/3
    assert corpus_wer(references, hypotheses) == pytest.approx(4 / 13)
    mean_rate = sum(word_error_rate(r, h) for r, h in zip(references, hypotheses, strict=True)) / 3
    assert mean_rate == pytest.approx(5 / 9)


def test_corpus_wer_edge_cases() -> None:
    assert corpus_wer(["", "a b"], ["x", "a b"]) == pytest.approx(1 / 2)  # an empty reference adds insertions
    with pytest.raises(ValueError, match="no word"):
        corpus_wer(["", ""], ["a", ""])
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        corpus_wer(["a", "b"], ["a"])


def _random_transcripts(seed: int, count: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    vocabulary = ["a", "b", "c", "d", "the", "cat"]
    pairs = []
    for _ in range(count):
        reference = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(1, 12)))
        hypothesis = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(0, 12)))
        pairs.append((reference, hypothesis))
    return pairs


def test_error_totals_and_corpus_wer_match_jiwer() -> None:
    jiwer = pytest.importorskip("jiwer")
    pairs = _random_transcripts(seed=7, count=300)
    for reference, hypothesis in pairs:
        output = jiwer.process_words(reference, hypothesis)
        expected_errors = output.substitutions + output.deletions + output.insertions
        assert word_errors(reference, hypothesis) == (expected_errors, len(reference.split()))
    references, hypotheses = zip(*pairs, strict=True)
    assert corpus_wer(references, hypotheses) == pytest.approx(jiwer.wer(list(references), list(hypotheses)))


# --- Whisper's English normalizer --------------------------------------------------------
# Expected outputs follow the rules of openai-whisper 20250625 (whisper/normalizers/english.py);
# each was checked against that code.


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("twenty one", "21"),
        ("one hundred and five", "105"),
        ("two thousand and twenty", "2020"),
        ("one two three", "123"),  # successive digits are read as one number
        ("one oh one", "101"),
        ("double seven", "77"),
        ("three point five", "3.5"),
        ("minus five", "-5"),
        ("twenty first", "21st"),
        ("a fifth of them", "a 5th of them"),
        ("the nineteen sixties", "the 1960s"),
        ("the ninth", "the ninth"),  # Whisper's ordinal rule makes "nineth", so "ninth" stays
        ("one", "one"),  # written out for readability
        ("ones", "ones"),
        ("one and a half", "one.5"),  # "1.5", then 1 -> "one": Whisper's output
        ("1,000 people", "1000 people"),
        ("007", "7"),
        ("ten dollars", "$10"),
        ("twenty five pounds", "£25"),
        ("two dollars and seven cents", "$2.07"),
        ("$20 million", "$20000000"),
        ("fifty percent", "50%"),
        ("fifty per cent", "50%"),
        ("it's 5.5% of $3", "it is 5.5% of $3"),
    ],
)
def test_numbers(text: str, normalized: str) -> None:
    assert normalize_english(text) == normalized


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("I won't go", "i will not go"),
        ("can't", "can not"),
        ("I'm sure", "i am sure"),
        ("they're here", "they are here"),
        ("he's been there", "he has been there"),
        ("let's go", "let us go"),
        ("gonna", "going to"),
        ("ma'am", "madam"),
        ("Mr. Smith and Dr. Jones", "mister smith and doctor jones"),
        ("St. Paul", "saint paul"),
    ],
)
def test_contractions_and_titles(text: str, normalized: str) -> None:
    assert normalize_english(text) == normalized


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("um I think uh yes", "i think yes"),
        ("hmm okay", "okay"),
        ("hello [noise] world (laughs) <unk>", "hello world"),
        ("Hello, world! How's it going?", "hello world how is it going"),
        ("Wait... what?!", "wait what"),
        ("e.g. this", "e g this"),
        ("Café naïve", "cafe naive"),
        ("HE HOPED THERE WOULD BE STEW FOR DINNER", "he hoped there would be stew for dinner"),
    ],
)
def test_fillers_brackets_punctuation_and_accents(text: str, normalized: str) -> None:
    assert normalize_english(text) == normalized


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("the colour of the theatre", "the color of the theater"),
        ("organise", "organize"),
        ("Favourite Neighbours", "favorite neighbors"),
    ],
)
def test_british_spellings_become_american(text: str, normalized: str) -> None:
    assert normalize_english(text) == normalized


def test_the_building_blocks_alone() -> None:
    assert standardize_numbers("twenty two apples and three pears") == "22 apples and 3 pears"
    assert standardize_spellings("colour  of   honour") == "color of honor"
    assert normalize_basic("Hello, World! [noise] (aside) café") == "hello world café"
    assert normalize_basic("Don't STOP—now.") == "don t stop now "  # Whisper keeps the trailing space
    assert normalize_basic("Café", remove_diacritics=True) == "cafe"


def test_spelling_list_is_whispers() -> None:
    text = resources.files("pytest_lmms.scoring").joinpath("english_spellings.json").read_text("utf-8")
    spellings = json.loads(text)
    assert len(spellings) == 1739
    assert spellings["colour"] == "color" and spellings["aeroplane"] == "airplane"
    whisper_normalizer = pytest.importorskip("whisper_normalizer")  # ships the same english.json
    shipped = resources.files(whisper_normalizer).joinpath("normalizers/english.json").read_text("utf-8")
    assert json.loads(shipped) == spellings
