"""Whisper's English text normalizer, for word error rates on English speech.

A reimplementation of ``EnglishTextNormalizer`` and ``BasicTextNormalizer`` from openai-whisper
20250625 (``whisper/normalizers/english.py`` and ``basic.py``; Radford et al., 2022, appendix
C), which lmms-eval and most ASR papers apply to the reference and the hypothesis before a WER.
The rules, their order and their quirks are Whisper's (``"ninth"`` is not read as a number,
``"007"`` becomes ``"7"``), so scores compare with published ones. The British-to-American
spelling list is Whisper's ``english.json``, shipped as ``english_spellings.json``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Generator, Iterator, Sequence
from fractions import Fraction
from functools import cache
from importlib import resources

__all__ = ["normalize_basic", "normalize_english", "standardize_numbers", "standardize_spellings"]

# --- symbols and diacritics (basic.py) -----------------------------------------------------

# letters that NFKD does not split into a base letter and a combining mark
_LETTER_SPELLINGS = {
    "œ": "oe",
    "Œ": "OE",
    "ø": "o",
    "Ø": "O",
    "æ": "ae",
    "Æ": "AE",
    "ß": "ss",
    "ẞ": "SS",
    "đ": "d",
    "Đ": "D",
    "ð": "d",
    "Ð": "D",
    "þ": "th",
    "Þ": "th",
    "ł": "l",
    "Ł": "L",
}


def _without_symbols_and_diacritics(text: str, keep: str = "") -> str:
    """Marks, symbols and punctuation (Unicode categories M*, S*, P*) become spaces, except
    those in ``keep``; combining accents (Mn) are dropped after NFKD."""
    out = []
    for char in unicodedata.normalize("NFKD", text):
        category = unicodedata.category(char)
        if char in keep:
            out.append(char)
        elif char in _LETTER_SPELLINGS:
            out.append(_LETTER_SPELLINGS[char])
        elif category == "Mn":
            continue
        elif category[0] in "MSP":
            out.append(" ")
        else:
            out.append(char)
    return "".join(out)


def _without_symbols(text: str) -> str:
    """Marks, symbols and punctuation become spaces after NFKC; accents stay."""
    return "".join(
        " " if unicodedata.category(char)[0] in "MSP" else char
        for char in unicodedata.normalize("NFKC", text)
    )


_BRACKETED = re.compile(r"[<\[][^>\]]*[>\]]")
_PARENTHESIZED = re.compile(r"\(([^)]+?)\)")
_WHITESPACE = re.compile(r"\s+")


def normalize_basic(text: str, remove_diacritics: bool = False) -> str:
    """Whisper's ``BasicTextNormalizer``: lowercase, drop ``[...]``/``<...>`` and ``(...)``
    spans, turn symbols and punctuation into spaces (and, if asked, drop accents), collapse
    whitespace runs to one space. Leading or trailing spaces are kept, as Whisper keeps them."""
    text = _BRACKETED.sub("", text.lower())
    text = _PARENTHESIZED.sub("", text)
    text = _without_symbols_and_diacritics(text) if remove_diacritics else _without_symbols(text)
    return _WHITESPACE.sub(" ", text.lower())


# --- spelled-out numbers (EnglishNumberNormalizer) -----------------------------------------

_ONE_NAMES = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven"]
_ONE_NAMES += ["twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_ONES = {name: value for value, name in enumerate(_ONE_NAMES, start=1)}
_TEN_NAMES = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_TENS = {name: 10 * value for value, name in enumerate(_TEN_NAMES, start=2)}
_THOUSANDS = ["thousand", "million", "billion", "trillion", "quadrillion", "quintillion", "sextillion"]
_THOUSANDS += ["septillion", "octillion", "nonillion", "decillion"]
_MULTIPLIERS = {"hundred": 100, **{name: 1000**power for power, name in enumerate(_THOUSANDS, start=1)}}
_ZEROS = {"o", "oh", "zero"}


def _ordinal_of(name: str) -> str:
    # Whisper's rule for the regular ordinals; it gives "nineth", so "ninth" stays a word
    return name + ("h" if name.endswith("t") else "th")


# a suffixed word gives its number and the suffix kept on the digits: "sixties" -> (60, "s")
_ONES_SUFFIXED: dict[str, tuple[int, str]] = {
    **{("sixes" if name == "six" else name + "s"): (value, "s") for name, value in _ONES.items()},
    "zeroth": (0, "th"),
    "first": (1, "st"),
    "second": (2, "nd"),
    "third": (3, "rd"),
    "fifth": (5, "th"),
    "twelfth": (12, "th"),
    **{
        _ordinal_of(name): (value, "th")
        for name, value in _ONES.items()
        if value > 3 and value not in (5, 12)
    },
}
_TENS_SUFFIXED: dict[str, tuple[int, str]] = {
    **{name.replace("y", "ies"): (value, "s") for name, value in _TENS.items()},
    **{name.replace("y", "ieth"): (value, "th") for name, value in _TENS.items()},
}
_MULTIPLIERS_SUFFIXED: dict[str, tuple[int, str]] = {
    **{name + "s": (value, "s") for name, value in _MULTIPLIERS.items()},
    **{name + "th": (value, "th") for name, value in _MULTIPLIERS.items()},
}
_DECIMAL_WORDS = {*_ONES, *_TENS, *_ZEROS}
_SIGN_WORDS = {"minus": "-", "negative": "-", "plus": "+", "positive": "+"}
_CURRENCY_WORDS = {
    "pound": "£",
    "pounds": "£",
    "euro": "€",
    "euros": "€",
    "dollar": "$",
    "dollars": "$",
    "cent": "¢",
    "cents": "¢",
}
_PREFIX_SYMBOLS = {*_SIGN_WORDS.values(), *_CURRENCY_WORDS.values()}
_SPECIAL_WORDS = {"and", "double", "triple", "point"}
_NUMBER_WORDS = {
    *_ZEROS,
    *_ONES,
    *_ONES_SUFFIXED,
    *_TENS,
    *_TENS_SUFFIXED,
    *_MULTIPLIERS,
    *_MULTIPLIERS_SUFFIXED,
    *_SIGN_WORDS,
    *_CURRENCY_WORDS,
    "per",
    "percent",
    *_SPECIAL_WORDS,
}
_ARABIC = re.compile(r"^\d+(\.\d+)?$")

Value = int | str
"""A number being read: an int while it can still grow arithmetically ("one hundred" then
"five" -> 105), a string once digits are only appended ("one two" -> "12", "3." -> "3.5")."""


def _fraction(text: Value) -> Fraction | None:
    try:
        return Fraction(text)
    except ValueError:
        return None


def _append_ones(value: Value | None, ones: int, previous: str | None) -> Value:
    """``value`` followed by a ones word (1 to 19)."""
    if value is None:
        return ones
    if isinstance(value, str) or previous in _ONES:
        if previous in _TENS and ones < 10:
            return str(value)[:-1] + str(ones)  # "oh twenty one" -> "021": the 1 replaces the 0
        return f"{value}{ones}"
    round_to = 10 if ones < 10 else 100
    return value + ones if value % round_to == 0 else f"{value}{ones}"


def _append_tens(value: Value | None, tens: int) -> Value:
    if value is None:
        return tens
    if isinstance(value, str) or value % 100 != 0:
        return f"{value}{tens}"
    return value + tens


def _scale(value: int, multiplier: int) -> int:
    # "two thousand three hundred": only the part below 1000 is multiplied
    return value // 1000 * 1000 + value % 1000 * multiplier


class _NumberReader:
    """One pass over the words of a text, yielding them with spelled-out numbers as digits.

    The reader holds the number read so far (``value``) and a sign or currency symbol
    waiting to be written before the next output (``prefix``); each output clears both.
    """

    def __init__(self) -> None:
        self.value: Value | None = None
        self.prefix: str | None = None

    def emit(self, text: Value) -> str:
        out = f"{self.prefix}{text}" if self.prefix is not None else str(text)
        self.value = None
        self.prefix = None
        return out

    def flush(self) -> Iterator[str]:
        if self.value is not None:
            yield self.emit(self.value)

    def read(self, words: Sequence[str]) -> Iterator[str]:
        padded: list[str | None] = [None, *words, None]
        skip_next = False
        for index in range(1, len(padded) - 1):
            if skip_next:
                skip_next = False
                continue
            previous, word, following = padded[index - 1], padded[index], padded[index + 1]
            assert word is not None
            skip_next = yield from self.read_word(previous, word, following)
        yield from self.flush()

    def read_word(self, previous: str | None, word: str, following: str | None) -> Generator[str, None, bool]:
        """Yield what ``word`` completes; return True when it consumed ``following`` too."""
        following_is_digits = following is not None and _ARABIC.match(following) is not None
        has_symbol = word[0] in _PREFIX_SYMBOLS
        digits = word[1:] if has_symbol else word
        if _ARABIC.match(digits):
            yield from self.read_digits(word, digits, has_symbol)
        elif word not in _NUMBER_WORDS:
            yield from self.flush()
            yield self.emit(word)
        elif word in _ZEROS:
            self.value = f"{self.value}0" if self.value else "0"
        elif word in _ONES:
            self.value = _append_ones(self.value, _ONES[word], previous)
        elif word in _ONES_SUFFIXED:
            ones, suffix = _ONES_SUFFIXED[word]
            yield self.emit(f"{_append_ones(self.value, ones, previous)}{suffix}")
        elif word in _TENS:
            self.value = _append_tens(self.value, _TENS[word])
        elif word in _TENS_SUFFIXED:
            tens, suffix = _TENS_SUFFIXED[word]
            yield self.emit(f"{_append_tens(self.value, tens)}{suffix}")
        elif word in _MULTIPLIERS:
            yield from self.read_multiplier(_MULTIPLIERS[word])
        elif word in _MULTIPLIERS_SUFFIXED:
            yield from self.read_multiplier_suffixed(*_MULTIPLIERS_SUFFIXED[word])
        elif word in _SIGN_WORDS:
            yield from self.flush()
            if following in _NUMBER_WORDS or following_is_digits:
                self.prefix = _SIGN_WORDS[word]
            else:
                yield self.emit(word)
        elif word in _CURRENCY_WORDS:
            if self.value is not None:
                self.prefix = _CURRENCY_WORDS[word]
                yield self.emit(self.value)
            else:
                yield self.emit(word)
        elif word in ("per", "percent"):
            return (yield from self.read_percent(word, following))
        else:
            return (yield from self.read_special(previous, word, following, following_is_digits))
        return False

    def read_digits(self, word: str, digits: str, has_symbol: bool) -> Iterator[str]:
        if self.value is not None:
            if isinstance(self.value, str) and self.value.endswith("."):
                self.value += word  # the decimals of "3 point 14", or an IP address
                return
            yield self.emit(self.value)
        if has_symbol:
            self.prefix = word[0]
        number = Fraction(digits)
        self.value = number.numerator if number.denominator == 1 else digits

    def read_multiplier(self, multiplier: int) -> Iterator[str]:
        value = self.value
        if value is None:
            self.value = multiplier
        elif isinstance(value, str) or value == 0:
            number = _fraction(value)
            if number is not None and (number * multiplier).denominator == 1:
                self.value = (number * multiplier).numerator  # "1.5 million" -> 1500000
            else:
                yield self.emit(value)
                self.value = multiplier
        else:
            self.value = _scale(value, multiplier)

    def read_multiplier_suffixed(self, multiplier: int, suffix: str) -> Iterator[str]:
        value = self.value
        if value is None:
            yield self.emit(f"{multiplier}{suffix}")
        elif isinstance(value, str):
            number = _fraction(value)
            if number is not None and (number * multiplier).denominator == 1:
                yield self.emit(f"{(number * multiplier).numerator}{suffix}")
            else:
                yield self.emit(value)
                yield self.emit(f"{multiplier}{suffix}")
        else:
            yield self.emit(f"{_scale(value, multiplier)}{suffix}")

    def read_percent(self, word: str, following: str | None) -> Generator[str, None, bool]:
        if self.value is None:
            yield self.emit(word)
        elif word == "percent":
            yield self.emit(f"{self.value}%")
        elif following == "cent":
            yield self.emit(f"{self.value}%")
            return True
        else:
            yield self.emit(self.value)
            yield self.emit(word)
        return False

    def read_special(
        self, previous: str | None, word: str, following: str | None, following_is_digits: bool
    ) -> Generator[str, None, bool]:
        """Read "and", "double", "triple" or "point": number words only before a number."""
        if following not in _NUMBER_WORDS and not following_is_digits:
            yield from self.flush()
            yield self.emit(word)
        elif word == "and":
            if previous not in _MULTIPLIERS:  # "one hundred and five" reads on; "one and two" does not
                yield from self.flush()
                yield self.emit(word)
        elif word in ("double", "triple"):
            if following in _ONES or following in _ZEROS:
                digit = _ONES.get(following, 0)
                prefix = str(self.value) if self.value else ""
                self.value = prefix + str(digit) * (2 if word == "double" else 3)
                return True
            yield from self.flush()
            yield self.emit(word)
        elif following in _DECIMAL_WORDS or following_is_digits:  # "point"
            self.value = f"{self.value}." if self.value else "."
        return False


_AND_A_HALF = re.compile(r"\band\s+a\s+half\b")


def _before_numbers(text: str) -> str:
    # "<number> and a half" -> "<number> point five"
    segments = _AND_A_HALF.split(text)
    kept = []
    for index, segment in enumerate(segments):
        if not segment.strip():
            continue  # Whisper drops an empty segment and the "and a half" after it
        kept.append(segment)
        if index < len(segments) - 1:
            last_word = segment.split()[-1]
            kept.append(
                "point five" if last_word in _DECIMAL_WORDS or last_word in _MULTIPLIERS else "and a half"
            )
    text = " ".join(kept)
    text = re.sub(r"([a-z])([0-9])", r"\1 \2", text)
    text = re.sub(r"([0-9])([a-z])", r"\1 \2", text)
    return re.sub(r"([0-9])\s+(st|nd|rd|th|s)\b", r"\1\2", text)  # keep "21st", "1960s" whole


def _after_numbers(text: str) -> str:
    # "$2 and ¢7" -> "$2.07", then "$0.07" -> "¢7"
    text = re.sub(
        r"([€£$])([0-9]+) (?:and )?¢([0-9]{1,2})\b",
        lambda m: f"{m.group(1)}{m.group(2)}.{int(m.group(3)):02d}",
        text,
    )
    text = re.sub(r"[€£$]0.([0-9]{1,2})\b", lambda m: f"¢{int(m.group(1))}", text)
    return re.sub(r"\b1(s?)\b", r"one\1", text)  # Whisper writes "one(s)", not "1(s)"


def standardize_numbers(text: str) -> str:
    """Whisper's ``EnglishNumberNormalizer`` on lowercase text: spelled-out numbers become
    digits (``"twenty one"`` -> ``"21"``, ``"one hundred and five"`` -> ``"105"``), keeping
    ordinal and plural suffixes (``"twenty first"`` -> ``"21st"``), with currencies
    (``"twenty dollars"`` -> ``"$20"``), percentages, signs, decimals (``"three point
    five"``) and digit sequences (``"one oh one"`` -> ``"101"``, ``"double seven"`` -> ``"77"``).
    """
    words = _before_numbers(text).split()
    return _after_numbers(" ".join(_NumberReader().read(words)))


# --- spellings (EnglishSpellingNormalizer) -------------------------------------------------


@cache
def _spellings() -> dict[str, str]:
    source = resources.files("pytest_lmms.scoring").joinpath("english_spellings.json")
    mapping: dict[str, str] = json.loads(source.read_text(encoding="utf-8"))
    return mapping


def standardize_spellings(text: str) -> str:
    """British spellings to American ones, word by word (Whisper's list: ``"colour"`` ->
    ``"color"``); words are split on whitespace and joined with one space."""
    spellings = _spellings()
    return " ".join(spellings.get(word, word) for word in text.split())


# --- the English normalizer (EnglishTextNormalizer) ----------------------------------------

_FILLERS = re.compile(r"\b(hmm|mm|mhm|mmm|uh|um)\b")
# Whisper's replacement list, applied in this order (later patterns see earlier results)
_REPLACEMENTS = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        # common contractions
        (r"\bwon't\b", "will not"),
        (r"\bcan't\b", "can not"),
        (r"\blet's\b", "let us"),
        (r"\bain't\b", "aint"),
        (r"\by'all\b", "you all"),
        (r"\bwanna\b", "want to"),
        (r"\bgotta\b", "got to"),
        (r"\bgonna\b", "going to"),
        (r"\bi'ma\b", "i am going to"),
        (r"\bimma\b", "i am going to"),
        (r"\bwoulda\b", "would have"),
        (r"\bcoulda\b", "could have"),
        (r"\bshoulda\b", "should have"),
        (r"\bma'am\b", "madam"),
        # titles and abbreviations
        (r"\bmr\b", "mister "),
        (r"\bmrs\b", "missus "),
        (r"\bst\b", "saint "),
        (r"\bdr\b", "doctor "),
        (r"\bprof\b", "professor "),
        (r"\bcapt\b", "captain "),
        (r"\bgov\b", "governor "),
        (r"\bald\b", "alderman "),
        (r"\bgen\b", "general "),
        (r"\bsen\b", "senator "),
        (r"\brep\b", "representative "),
        (r"\bpres\b", "president "),
        (r"\brev\b", "reverend "),
        (r"\bhon\b", "honorable "),
        (r"\basst\b", "assistant "),
        (r"\bassoc\b", "associate "),
        (r"\blt\b", "lieutenant "),
        (r"\bcol\b", "colonel "),
        (r"\bjr\b", "junior "),
        (r"\bsr\b", "senior "),
        (r"\besq\b", "esquire "),
        # perfect tenses ("'s done" is ambiguous, so it is left alone)
        (r"'d been\b", " had been"),
        (r"'s been\b", " has been"),
        (r"'d gone\b", " had gone"),
        (r"'s gone\b", " has gone"),
        (r"'d done\b", " had done"),
        (r"'s got\b", " has got"),
        # general contractions
        (r"n't\b", " not"),
        (r"'re\b", " are"),
        (r"'s\b", " is"),
        (r"'d\b", " would"),
        (r"'ll\b", " will"),
        (r"'t\b", " not"),
        (r"'ve\b", " have"),
        (r"'m\b", " am"),
    )
)


def normalize_english(text: str) -> str:
    """Whisper's ``EnglishTextNormalizer``.

    In order: lowercase; drop ``[...]``/``<...>`` and ``(...)`` spans and the fillers hmm,
    mm, mhm, mmm, uh, um; expand contractions and titles (``"won't"`` -> ``"will not"``,
    ``"mr"`` -> ``"mister"``); drop commas between digits and periods not followed by a
    digit; turn other symbols and punctuation into spaces and drop accents (keeping ``. % $
    ¢ € £`` for numbers); :func:`standardize_numbers`; :func:`standardize_spellings`; drop
    the kept symbols that ended up away from a number; collapse whitespace runs. Leading or
    trailing spaces may remain, as in Whisper; split the result into words.
    """
    text = text.lower()
    text = _BRACKETED.sub("", text)
    text = _PARENTHESIZED.sub("", text)
    text = _FILLERS.sub("", text)
    text = re.sub(r"\s+'", "'", text)
    for pattern, replacement in _REPLACEMENTS:
        text = pattern.sub(replacement, text)
    text = re.sub(r"(\d),(\d)", r"\1\2", text)
    text = re.sub(r"\.([^0-9]|$)", r" \1", text)
    text = _without_symbols_and_diacritics(text, keep=".%$¢€£")
    text = standardize_numbers(text)
    text = standardize_spellings(text)
    text = re.sub(r"[.$¢€£]([^0-9])", r" \1", text)
    text = re.sub(r"([^0-9])%", r"\1 ", text)
    return _WHITESPACE.sub(" ", text)
