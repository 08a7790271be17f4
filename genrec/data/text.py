"""Text cleaning for every loader: source titles and reviews carry HTML entities and stray whitespace."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_WHITESPACE = re.compile(r"\s+")


def unescape_html(text: str) -> str:
    """``html.unescape`` until stable: scraped data is often escaped twice (``&amp;quot;`` -> ``"``)."""
    for _ in range(10):  # a bound, not a loop that relies on convergence of adversarial input
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    return text


def clean_text(text: object) -> str:
    """Unescape HTML entities, collapse whitespace runs to one space and strip; ``None`` becomes ``""``."""
    if text is None:
        return ""
    if not isinstance(text, str):
        text = str(text)
    return _WHITESPACE.sub(" ", unescape_html(text)).strip()


# English function words (articles, pronouns, auxiliaries, prepositions, conjunctions, common adverbs):
# phrases made only of these name nothing, and review-feature extraction never takes them as features.
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing don't down during each either even ever every few
    for from further had has have having he her here hers herself him himself his how however i if in into
    is isn't it it's its itself just me might more most much must my myself neither no nor not now of off
    on once one only or other our ours ourselves out over own same shall she should so some still such than
    that that's the their theirs them themselves then there these they this those through to too under
    until up upon us very was wasn't we were what when where whether which while who whom whose why will
    with within without would yet you your yours yourself yourselves""".split()
)

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def word_tokens(text: str) -> list[str]:
    """Lower-cased words (letters and digits; internal apostrophes kept, ``don't`` and ``don’t`` alike);
    punctuation is dropped.

    The one tokenisation behind phrase matching, so a catalog phrase and free text compare the same way.
    """
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def normalize_phrase(text: str) -> str:
    """The matching key of a phrase: its :func:`word_tokens` joined by single spaces."""
    return " ".join(word_tokens(text))


class PhraseMatcher:
    """Finds known phrases in text: case-insensitive, whole words only, longest match first.

    Overlapping matches are resolved in favour of the longer phrase, so a full item title is one mention
    rather than the brand and category words inside it.
    """

    def __init__(self, phrases: Iterable[str]):
        by_first: dict[str, set[tuple[str, ...]]] = {}
        for phrase in phrases:
            tokens = tuple(word_tokens(phrase))
            if tokens:
                by_first.setdefault(tokens[0], set()).add(tokens)
        self._by_first = {k: sorted(v, key=len, reverse=True) for k, v in by_first.items()}

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_first.values())

    def find(self, text: str | Sequence[str]) -> list[str]:
        """Normalized phrases (see :func:`normalize_phrase`) found in ``text`` (a string or its word tokens),
        in text order; a phrase occurring twice is returned twice."""
        tokens = word_tokens(text) if isinstance(text, str) else list(text)
        return [" ".join(tokens[start:end]) for start, end in self.spans(tokens)]

    def spans(self, tokens: Sequence[str]) -> list[tuple[int, int]]:
        """``(start, end)`` token spans of the phrases :meth:`find` returns, in text order."""
        spans: list[tuple[int, int]] = []
        for start, token in enumerate(tokens):
            for candidate in self._by_first.get(token, ()):
                if tuple(tokens[start : start + len(candidate)]) == candidate:
                    spans.append((start, start + len(candidate)))
                    break  # candidates are longest first
        taken = [False] * len(tokens)
        chosen: list[tuple[int, int]] = []
        for start, end in sorted(spans, key=lambda s: (s[0] - s[1], s[0])):
            if not any(taken[start:end]):
                taken[start:end] = [True] * (end - start)
                chosen.append((start, end))
        return sorted(chosen)


# a quotation of fewer words than this names no title unless it is the whole title
MIN_QUOTED_WORDS = 2


@dataclass(frozen=True)
class Quotation:
    """A double-quoted span of a text: ``text[start:end]`` is the quotation with its quotes, ``quoted`` what
    lies between them; an open quotation (no closing quote yet) runs to the end of the text."""

    start: int
    end: int
    quoted: str
    closed: bool


def quotations(text: str, titles: Sequence[str] = ()) -> list[Quotation]:
    """The quotations of ``text``, left to right. One that copies a title of ``titles`` containing double
    quotes itself (``Argan Oil ... acclaimed as "Nature's Liquid Gold" ...``) is not ended by them."""
    found, i = [], 0
    while (start := text.find('"', i)) >= 0:
        body = text[start + 1 :]
        span = None
        for title in (t for t in titles if '"' in t):
            if body.startswith(title + '"'):
                span = (title, True)
            elif title.startswith(body):
                span = (body, False)
            if span:
                break
        if span is None:
            close = body.find('"')
            span = (body, False) if close < 0 else (body[:close], True)
        quoted, closed = span
        end = start + 1 + len(quoted) + closed
        found.append(Quotation(start, end, quoted, closed))
        if not closed:
            break
        i = end
    return found
