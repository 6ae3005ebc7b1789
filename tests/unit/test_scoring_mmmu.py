"""MMMU's shared answer rules (pytest_lmms.scoring.mmmu) in both variants, the seeded fallback
pick and the media folder lookup; expectations worked out by hand from the official code."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_lmms.media import media_folder
from pytest_lmms.scoring import seeded_choice
from pytest_lmms.scoring.mmmu import (
    DISCIPLINES,
    EXTENDED_KEY_INDICATORS,
    KEY_INDICATORS,
    eval_open,
    extract_numbers,
    fallback_choice,
    find_choice,
    gold_answers,
    key_subresponses,
    letters_for,
    normalize_str,
    parse_multi_choice,
    parse_open_response,
)

PAINTERS = ["Claude Monet", "Pablo Picasso", "Vincent van Gogh", "Salvador Dali"]


def test_the_official_subject_table() -> None:
    subjects = [subject for group in DISCIPLINES.values() for subject in group]
    assert len(DISCIPLINES) == 6 and len(subjects) == len(set(subjects)) == 30
    assert "Art_Theory" in DISCIPLINES["Art and Design"] and "Manage" in DISCIPLINES["Business"]


# ---- multiple choice ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "official", "lenient"),
    [
        ("B", "B", "B"),
        ("B.", "B", "B"),  # the end "." is stripped: " B " (official), "B " (lenient)
        ("(C)", "C", "C"),
        ("(A) or C", "A", "A"),  # a bracketed letter outranks a bare one
        ("A or B? I would say B", "B", "B"),  # several: the one written last
        ("A. Monet, no: B.", "B", "A"),  # lenient: "A." is read before any bare letter
        ("D: Dali", None, "D"),  # "D:" is only a lenient form; 2 tokens, no text pass
        ("A: no. C: yes", None, "C"),  # lenient: two "X:" letters, the last wins
        ("A. first, then B: final", None, "A"),  # "A." found: "B" is located by "B." (absent)
        ("AB", None, "B"),  # lenient "X " needs no space before the letter
        ("b", None, None),  # both case-sensitive
        ("Picasso", None, None),  # option text only in responses over 5 tokens
        ("I would go with the painter Pablo Picasso here", "B", "B"),
        ("Not Claude Monet but Vincent van Gogh, I am sure", "C", "C"),  # two texts: the last
        ("", None, None),
    ],
)
def test_find_choice_in_both_variants(response: str, official: str | None, lenient: str | None) -> None:
    assert find_choice(response, PAINTERS) == official
    assert find_choice(response, PAINTERS, lenient_letters=True) == lenient


def test_parse_multi_choice_falls_back_to_the_seeded_pick() -> None:
    assert letters_for(PAINTERS) == ["A", "B", "C", "D"]
    assert parse_multi_choice("(D)", PAINTERS, "validation_Art_1") == "D"
    # the pick test_mmmu.py pins for this id, the same from both entry points
    assert fallback_choice("validation_Art_1", PAINTERS) == "A"
    assert parse_multi_choice("no idea", PAINTERS, "validation_Art_1") == "A"
    assert parse_multi_choice("no idea", [], "validation_Art_1") is None


# ---- open answers ---------------------------------------------------------------------------


def test_extract_numbers_runs_the_three_patterns_in_order() -> None:
    assert extract_numbers("-2 and .5") == ["-2", ".5"]
    # the plain pattern also reads the tails of the others' matches
    assert extract_numbers("12,345 or 3e8") == ["12,345", "3e8", "345", "8"]
    assert extract_numbers("1/2") == ["1", "2"]
    assert extract_numbers("no digits") == []


def test_normalize_str() -> None:
    assert normalize_str("3.456") == [3.46]
    assert normalize_str(" 1,000 ") == [1000.0]
    assert normalize_str("Yes") == ["yes"]
    assert normalize_str("A") == [" a", "a "]


@pytest.mark.parametrize(
    ("response", "official", "extended"),
    [
        # "are " is only an extended phrase; no phrase at all: the whole lower-cased text
        ("There are 5 apples", ["there are 5 apples"], ["5 apples"]),
        # "so " inside "also" counts; extended "has " leaves a shorter tail
        ("It also has 3", ["has 3"], ["3"]),
        # "=" only on the last line; the shortest tail per line
        ("x = 3\nso y = 4", ["4"], ["4"]),
        ("Thus it is 7.\nDone", ["7."], ["7."]),  # only the whole response loses its end "."
        # a tail of only punctuation is dropped
        ("answer is :", ["answer is :"], ["answer is :"]),
    ],
)
def test_key_subresponses_in_both_variants(response: str, official: list[str], extended: list[str]) -> None:
    assert key_subresponses(response) == official
    assert key_subresponses(response, extended_indicators=True) == extended


def test_indicator_lists() -> None:
    assert len(KEY_INDICATORS) == 8 and len(EXTENDED_KEY_INDICATORS) == 26
    assert EXTENDED_KEY_INDICATORS[:8] == KEY_INDICATORS


def test_parse_open_response() -> None:
    assert parse_open_response("There are 5 apples") == ["there are 5 apples", 5.0]
    assert parse_open_response("There are 5 apples", extended_indicators=True) == ["5 apples", 5.0]
    # the key, then its numbers; "1,200" also yields "200" from the plain pattern; no repeats
    assert parse_open_response("The total is 1,200") == [1200.0, 200.0]
    assert parse_open_response("So 2 is 2") == [2.0]


def test_eval_open() -> None:
    assert eval_open("24", [24.0])
    assert eval_open(["25", "24.0"], [24.0])
    assert not eval_open("24", ["24 apples"])  # a numeric gold matches numbers only
    assert eval_open("Florida", ["tampa, florida"])  # text: gold inside the prediction
    assert not eval_open("a", ["banana"])  # one letter must stand apart
    assert eval_open("a", ["option a "])
    assert not eval_open("24", [])


def test_gold_answers() -> None:
    assert gold_answers("['24', '24.0']") == ["24", "24.0"]
    assert gold_answers(["x ", 3]) == ["x", "3"]
    assert gold_answers(" 42 ") == ["42"]
    assert gold_answers("[1, 2") == ["[1, 2"]  # not a literal: one answer
    assert gold_answers("[x]") == ["[x]"]


# ---- seeded_choice --------------------------------------------------------------------------


def test_seeded_choice_derivations() -> None:
    key, letters = "egoschema:0074f737", ["A", "B", "C", "D", "E"]
    digest = hashlib.sha256(key.encode("utf-8"))
    as_hex = random.Random(digest.hexdigest()).choice(letters)
    as_int = random.Random(int.from_bytes(digest.digest()[:8], "big")).choice(letters)
    assert seeded_choice(key, letters) == as_hex
    assert seeded_choice(key, letters, digest_seed="int64") == as_int
    assert seeded_choice(key, tuple(letters)) == as_hex  # any sequence, same pick
    assert {seeded_choice(f"q{n}", letters) for n in range(60)} == set(letters)  # the key drives it
    with pytest.raises(ValueError, match="digest_seed"):
        seeded_choice(key, letters, digest_seed="md5")  # type: ignore[arg-type]
    with pytest.raises(IndexError):
        seeded_choice(key, [])


def test_seeded_choice_does_not_depend_on_pythonhashseed() -> None:
    code = (
        "from pytest_lmms.scoring import seeded_choice\n"
        "print([seeded_choice(f'q{n}', 'ABCDE') for n in range(20)],"
        " [seeded_choice(f'q{n}', 'ABCDE', digest_seed='int64') for n in range(20)])\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("0", "12345")
    }
    expected = str([seeded_choice(f"q{n}", "ABCDE") for n in range(20)]) + " "
    expected += str([seeded_choice(f"q{n}", "ABCDE", digest_seed="int64") for n in range(20)]) + "\n"
    assert outputs == {expected}


# ---- media_folder ---------------------------------------------------------------------------


def test_media_folder_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("BENCH_DIR", str(tmp_path / "env"))
    metadata = {"video_dir": str(tmp_path / "meta")}
    assert media_folder(metadata, "BENCH_DIR", "bench") == tmp_path / "meta"
    assert media_folder({"video_dir": ""}, "BENCH_DIR", "bench") == tmp_path / "env"  # empty: unset
    assert media_folder(None, "BENCH_DIR", "bench") == tmp_path / "env"
    monkeypatch.setenv("BENCH_DIR", "")
    assert media_folder({}, "BENCH_DIR", "bench") == tmp_path / "hf" / "bench"
    assert media_folder({"audio_dir": "/a"}, "BENCH_DIR", "bench", key="audio_dir") == Path("/a")


def test_media_folder_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.delenv("BENCH_DIR", raising=False)
    assert media_folder(None, "BENCH_DIR", "bench") == tmp_path / ".cache" / "huggingface" / "bench"
    assert media_folder({"video_dir": "~/videos"}, "BENCH_DIR", "bench") == tmp_path / "videos"
