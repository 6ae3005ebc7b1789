"""Reasoning-tag handling: parse the configured tag pairs and strip reasoning from answers."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

DEFAULT_REASONING_TAGS: tuple[tuple[str, str], ...] = (
    ("<think>", "</think>"),
    ("<thinking>", "</thinking>"),
    ("<reasoning>", "</reasoning>"),
    ("<|begin_of_thought|>", "<|end_of_thought|>"),
)

_BARE_NAME = re.compile(r"[A-Za-z_][\w.\-]*")
_ANGLE_NAME = re.compile(r"<([A-Za-z_][\w.\-]*)>")
_DISABLED = frozenset({"", "none", "off", "false"})


def parse_reasoning_tags(
    spec: str | Sequence[str] | Sequence[Sequence[str]] | None,
) -> tuple[tuple[str, str], ...]:
    """Turn a reasoning-tag specification into ``((open, close), ...)`` pairs.

    Accepted forms:

    - ``None``: the option was not given, so :data:`DEFAULT_REASONING_TAGS`.
    - ``"none"``, ``"off"``, ``"false"`` or ``""`` (any case, surrounding blanks ignored): ``()``,
      which turns stripping off.
    - A comma-separated string, as from ``--lmms-reasoning-tags=think,reasoning``, whose items
      are each one of: a bare name (``think`` -> ``("<think>", "</think>")``), one angle-bracket
      tag (``<think>`` -> the same pair), or an explicit ``open:close`` pair
      (``<|begin_of_thought|>:<|end_of_thought|>``).
    - A sequence (YAML list) whose items are such strings or two-element ``[open, close]``
      sequences, e.g. ``[["<think>", "</think>"]]``. An empty sequence means ``()``.

    Duplicate pairs are dropped, keeping the first occurrence's order.

    Raises:
        ValueError: naming the offending text, for an item that is none of the forms above, an
            empty tag, or a pair whose open and close tags are equal.
    """
    if spec is None:
        return DEFAULT_REASONING_TAGS
    if isinstance(spec, str):
        if spec.strip().lower() in _DISABLED:
            return ()
        items: list[str | Sequence[str]] = [item.strip() for item in spec.split(",")]
    elif isinstance(spec, Sequence):
        items = list(spec)
    else:
        raise ValueError(f"reasoning tags must be a string or a list, got {spec!r}")

    pairs: list[tuple[str, str]] = []
    for item in items:
        pair = _parse_item(item, spec)
        if pair not in pairs:
            pairs.append(pair)
    return tuple(pairs)


def _parse_item(item: object, spec: object) -> tuple[str, str]:
    if isinstance(item, str):
        return _parse_string_item(item.strip(), spec)
    if isinstance(item, Sequence) and len(item) == 2 and all(isinstance(t, str) for t in item):
        return _checked_pair(item[0].strip(), item[1].strip(), item)
    raise ValueError(
        f"invalid reasoning tag item {item!r} in {spec!r}: expected a name, '<open>:<close>' "
        "or a two-element [open, close] list"
    )


def _parse_string_item(item: str, spec: object) -> tuple[str, str]:
    if not item:
        raise ValueError(f"empty reasoning tag item in {spec!r}")
    if ">:<" in item:
        if item.count(">:<") != 1:
            raise ValueError(f"invalid reasoning tag pair {item!r} in {spec!r}")
        open_tag, close_tag = item.split(">:<")
        return _checked_pair(open_tag + ">", "<" + close_tag, item)
    if ":" in item:
        parts = item.split(":")
        if len(parts) != 2:
            raise ValueError(f"invalid reasoning tag pair {item!r} in {spec!r}")
        return _checked_pair(parts[0].strip(), parts[1].strip(), item)
    for pattern in (_BARE_NAME, _ANGLE_NAME):
        match = pattern.fullmatch(item)
        if match:
            name = match.group(1) if match.groups() else match.group(0)
            return f"<{name}>", f"</{name}>"
    raise ValueError(
        f"invalid reasoning tag {item!r} in {spec!r}: expected a name like 'think', "
        "'<think>' or a pair like '<think>:</think>'"
    )


def _checked_pair(open_tag: str, close_tag: str, source: object) -> tuple[str, str]:
    if not open_tag or not close_tag:
        raise ValueError(f"empty tag in reasoning tag pair {source!r}")
    if open_tag == close_tag:
        raise ValueError(f"reasoning tag pair {source!r} has the same open and close tag")
    return open_tag, close_tag


@dataclass(frozen=True, slots=True)
class _TagRule:
    open: str
    close: str
    block: re.Pattern[str]


@lru_cache(maxsize=64)
def _compile(tags: tuple[tuple[str, str], ...]) -> tuple[_TagRule, ...]:
    return tuple(_TagRule(o, c, re.compile(re.escape(o) + ".*?" + re.escape(c), re.DOTALL)) for o, c in tags)


def _rules_for(tags: Sequence[tuple[str, str]]) -> tuple[_TagRule, ...]:
    try:
        return _compile(tags)  # a tuple of tuples hits the cache directly
    except TypeError:  # unhashable: a list, or pairs given as lists
        return _compile(tuple((str(o), str(c)) for o, c in tags))


def strip_reasoning(text: str, tags: Sequence[tuple[str, str]] = DEFAULT_REASONING_TAGS) -> str:
    """Return the answer part of ``text``, with reasoning removed.

    Tags are matched literally and case-sensitively. Each ``(open, close)`` pair is applied in
    the order given, with these rules:

    1. Orphan close tag: when a close tag appears before any open tag of its pair (chat
       templates such as Qwen3's put the open tag in the prompt, so the model's output starts
       inside the reasoning), everything up to and including the *last* close tag is dropped.
    2. Complete blocks: every ``open ... close`` block is removed, non-greedily and across
       newlines, so several blocks are all removed and the text between them is kept.
    3. Leftover close tag (nested or malformed blocks, e.g. ``<think>a<think>b</think>c
       </think>d``): everything up to and including the last one is dropped, as in rule 1.
    4. Unclosed open tag (generation cut off inside the reasoning): everything from it on is
       reasoning, so the answer is what came before it, often ``""``.

    Finally surrounding whitespace is stripped. An empty ``tags`` turns stripping off (only the
    whitespace is stripped). Text containing no tag costs a few substring checks.
    """
    rules = _rules_for(tags)
    for rule in rules:
        has_open = rule.open in text
        has_close = rule.close in text
        if not (has_open or has_close):
            continue
        if has_close and (not has_open or text.index(rule.close) < text.index(rule.open)):
            text = text[text.rindex(rule.close) + len(rule.close) :]
            has_open = rule.open in text
        if has_open:
            text = rule.block.sub("", text)
        if rule.close in text:
            text = text[text.rindex(rule.close) + len(rule.close) :]
        cut = text.find(rule.open)
        if cut != -1:
            text = text[:cut]
    return text.strip()
