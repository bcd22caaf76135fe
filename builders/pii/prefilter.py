"""Where a cue pattern can start, read from the pattern itself, so that a long alternation of cue words is tried
only at the words that could begin one of them.

`regex` tries every alternative of a pattern at every word of a text; the name cues have some two hundred, and
that was the largest single cost of the name finder (measured: ~130 µs a prompt, most of it failing at words that
begin no cue). `StartGate` lists every string of up to `length` characters that a match can begin with (by walking
the standard library's parse of the pattern) and asks the pattern for a match only at the words that begin with one
of them. The matches are the ones `finditer` gives, in the same order: a match starts at a word, every word that
could start one is tried, left to right, from the end of the previous match.
"""

from __future__ import annotations

import re
from re import _constants as C  # noqa: N812 (the parser's opcode names)
from re import _parser as sre_parse  # the cue patterns use no syntax that only `regex` has

import regex

_ZERO_WIDTH = {C.AT, C.ASSERT, C.ASSERT_NOT}
_REPEATS = {C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT}


class Unbounded(ValueError):
    """The pattern can start with any of too many strings (a class such as \\w or '.', a negated set) to list."""


def prefixes(pattern: str, length: int, *, fold: bool) -> frozenset[str]:
    """Every string that a match of `pattern` can start with: its first `length` characters, or the whole match
    when it can be shorter. With `fold`, letters in lower case (compare with the text in lower case).
    Lookarounds are ignored (the set can only be larger for it). Raises Unbounded where a class of more than 64
    characters, or any character, comes within the first `length` characters."""

    def char(code: int) -> str:
        return chr(code).lower() if fold else chr(code)

    def one(node, states: set[str]) -> set[str]:
        op, arg = node
        done = {s for s in states if len(s) >= length}
        todo = states - done
        if not todo or op in _ZERO_WIDTH:
            return states
        if op == C.LITERAL:
            return done | {s + char(arg) for s in todo}
        if op == C.IN:
            chars: set[str] = set()
            for kind, value in arg:
                if kind == C.LITERAL:
                    chars.add(char(value))
                elif kind == C.RANGE and value[1] - value[0] < 64:
                    chars.update(char(c) for c in range(value[0], value[1] + 1))
                else:
                    raise Unbounded(f"{kind} in {pattern[:60]!r}")
            return done | {s + c for s in todo for c in chars}
        if op == C.SUBPATTERN and arg[1] & C.SRE_FLAG_IGNORECASE and not fold:
            raise Unbounded(f"a case-insensitive part in {pattern[:60]!r}, whose prefixes were asked case-sensitively")
        if op in (C.SUBPATTERN, C.ATOMIC_GROUP):
            return seq(arg[-1] if op == C.SUBPATTERN else arg, states)
        if op == C.BRANCH:
            return set().union(*(seq(alt, states) for alt in arg[1]))
        if op in _REPEATS:
            low, high, sub = arg
            out, cur = set(), states
            for k in range(0, low + length + 2):
                if k >= low:
                    out |= cur
                if k == high:
                    return out
                nxt = seq(sub, cur)
                if nxt == cur:  # more repetitions change nothing: every count from here on, `low` included, gives cur
                    return out | cur
                cur = nxt
            raise Unbounded(f"a repetition in {pattern[:60]!r} that never stops adding prefixes")
        raise Unbounded(f"{op} in {pattern[:60]!r}")

    def seq(nodes, states: set[str]) -> set[str]:
        for node in nodes:
            states = one(node, states)
        return states

    parsed = sre_parse.parse(pattern)
    if parsed.state.flags & C.SRE_FLAG_IGNORECASE and not fold:
        raise Unbounded(f"{pattern[:60]!r} is case-insensitive; its prefixes were asked case-sensitively")
    return frozenset(seq(parsed, {""}))


def starts_at_word(pattern: str) -> bool:
    """Whether every match of `pattern` begins with `\\b` and then a word character (every alternative does)."""

    def seq(nodes) -> bool:
        for op, arg in nodes:
            if op == C.AT:
                return arg == C.AT_BOUNDARY
            if op in (C.ASSERT, C.ASSERT_NOT):
                continue
            if op == C.SUBPATTERN:
                return seq(arg[-1])
            if op == C.BRANCH:
                return all(seq(alt) for alt in arg[1])
            return False
        return False

    return seq(sre_parse.parse(pattern))


def trie(strings) -> str:
    """One pattern matching exactly `strings`, as a trie ("hi(?:ya)?|tell"): a regular expression engine tries it
    one character at a time, where a flat alternation tries every string in turn."""
    tree: dict = {}
    for string in strings:
        node = tree
        for ch in string:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict) -> str:
        branches = [re.escape(ch) + emit(node[ch]) for ch in sorted(k for k in node if k)]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 and "" not in node else "(?:" + "|".join(branches) + ")"
        return body + ("?" if "" in node else "")

    return emit(tree)


class StartGate:
    """The words of a text where a cue pattern may start: those that begin with one of the pattern's prefixes,
    found by one pass of a trie of them."""

    def __init__(self, folded: list[str], exact: list[str] = (), length: int = 5):
        """folded: patterns matched case-insensitively; exact: case-sensitive ones. Every match of each must start
        at a word (`\\b`, then a word character); ValueError otherwise."""
        for source in [*folded, *exact]:
            if not starts_at_word(source):
                raise ValueError(f"a match of {source[:60]!r} may start inside a word or at no word")
        self.folded = frozenset().union(*(prefixes(p, length, fold=True) for p in folded))
        self.exact = frozenset().union(*(prefixes(p, length, fold=False) for p in exact))
        if not all(p and (p[0].isalnum() or p[0] == "_") for p in self.folded | self.exact):
            raise ValueError("a cue may start with no word character")
        gate = rf"\b(?=(?i:{trie(self.folded)}){'|' + trie(self.exact) if self.exact else ''})"
        # the standard library's engine is ~3x faster here, and on ASCII text its \b, \w and case-insensitive
        # letters are those of `regex`; other texts are read with `regex` itself, as the cue patterns are
        self._ascii = re.compile(gate)
        self._unicode = regex.compile(gate)

    def finditer(self, pattern, text: str):
        """pattern.finditer(text), for the pattern this gate was made from."""
        return matches_at(pattern, text, (g.start() for g in (self._ascii if text.isascii() else self._unicode).finditer(text)))


def matches_at(pattern, text: str, starts):
    """pattern.finditer(text) where every match starts at one of `starts` (ascending positions): the pattern is
    asked at each, from the end of the previous match on, as finditer would move on."""
    end = 0
    for at in starts:
        if at >= end:
            m = pattern.match(text, at)
            if m:
                yield m
                end = m.end()
