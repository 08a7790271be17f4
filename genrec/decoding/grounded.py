"""Grounded decoding: a language model may name only the attributes the item or the user's history has.

Trie-constrained beam search keeps recommendations inside the catalog; this keeps explanations inside the
facts. :class:`PhraseTrie` holds the token sequences of every attribute phrase the catalog knows (brands,
categories, price bands, as spelled in the catalog, re-cased, with and without a leading space), plus the
titles of the items being explained, added as they come.

:class:`GroundedPhrasesProcessor` bans, at each step, every token that would complete a phrase whose
attributes are all outside the row's allowed set, unless that token also lies on the path of an allowed
phrase ("Now" may start the allowed "Now Foods" even where the brand "Now" is not allowed; the item's own
title may begin with another brand's name). A phrase reached that way must then be finished as the allowed
one: after "Now" only "Foods" may follow, and "Bath & Spa" must go on to "Pillows" when that is the allowed
phrase and the category "Bath" is not.

Matching is on tokens, not words, so it errs strict: a banned phrase is also banned inside a longer word
("Nail" in "Nails").

:class:`QuotedTitlesProcessor` keeps quotations true: text inside double quotes copies the title of the
item or of a shown history item verbatim.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from typing import Any

import torch
from transformers import LogitsProcessor

from genrec.data.text import MIN_QUOTED_WORDS, quotations

LONG_PHRASE_WORDS = 4
MAX_PHRASE_TOKENS = 24  # a longer spelling is kept to its first tokens: matching looks no further back


def surface_variants(surface: str) -> set[str]:
    """How a model may spell a phrase: as given, lower-cased, title-cased, capitalized, with either
    apostrophe, hyphenated; after a space or not. Long phrases (titles) are quoted, not respelled."""
    if len(surface.split()) > LONG_PHRASE_WORDS:
        return {surface, " " + surface}
    forms = {
        surface,
        surface.lower(),
        surface.title(),
        surface.capitalize(),
        surface[:1].upper() + surface[1:],
    }
    forms |= {f.replace("'", "\u2019") for f in forms} | {f.replace(" ", "-") for f in forms}
    return forms | {" " + f for f in forms}


class PhraseTrie:
    """Token-id trie of phrase spellings; each node knows the attribute keys of the phrases ending there."""

    def __init__(self, tokenizer: Any, surfaces: Mapping[str, Collection[Hashable]]):
        self.tokenizer = tokenizer
        self.children: list[dict[int, int]] = [{}]
        self.ends: list[frozenset[Hashable]] = [frozenset()]
        self._paths: dict[Hashable, set[int]] = {}  # key -> every node on the paths of its spellings
        self._added: set[str] = set()
        self.depth = 0  # the longest spelling, in tokens: how far back a match can start
        self.add(surfaces)

    def add(self, surfaces: Mapping[str, Collection[Hashable]]) -> None:
        """Insert every spelling of each surface (those already inserted are skipped)."""
        for surface, keys in surfaces.items():
            if surface in self._added:
                continue
            self._added.add(surface)
            for form in surface_variants(surface):
                node, path = 0, []
                for token in self.tokenizer.encode(form, add_special_tokens=False)[:MAX_PHRASE_TOKENS]:
                    node = self._child(node, token)
                    path.append(node)
                self.depth = max(self.depth, len(path))
                if path:
                    self.ends[node] = self.ends[node] | frozenset(keys)
                    for key in keys:
                        self._paths.setdefault(key, set()).update(path)

    def _child(self, node: int, token: int) -> int:
        nxt = self.children[node].get(token)
        if nxt is None:
            nxt = len(self.children)
            self.children[node][token] = nxt
            self.children.append({})
            self.ends.append(frozenset())
        return nxt

    def __len__(self) -> int:
        return len(self.children)

    def protected(self, allowed: Iterable[Hashable]) -> set[int]:
        """Nodes on the way to an allowed phrase: never banned."""
        return set().union(*(self._paths.get(key, ()) for key in allowed))

    def walk(self, tokens: Sequence[int], allowed: frozenset[Hashable]) -> tuple[int | None, bool]:
        """The node ``tokens`` lead to (``None``: off the trie), and whether a disallowed phrase was passed
        on the way with no allowed one completed since (the allowed phrase must then be finished)."""
        node, owed = 0, False
        for token in tokens:
            node = self.children[node].get(token)
            if node is None:
                return None, False
            if self.ends[node]:
                owed = not self.ends[node] & allowed
        return node, owed

    def banned_after(self, node: int, allowed: frozenset[Hashable], protected: set[int]) -> list[int]:
        """Tokens that from ``node`` would complete a phrase naming nothing allowed."""
        return [
            token
            for token, child in self.children[node].items()
            if self.ends[child] and not self.ends[child] & allowed and child not in protected
        ]


class GroundedPhrasesProcessor(LogitsProcessor):
    """Bans completions of phrases outside each row's allowed attributes (see the module docstring).

    ``allowed[b]`` is what batch row ``b`` may name; under beam search rows are ``b * num_beams + k``.
    ``prompt_length`` is the (left-padded) prompt width: matching starts after it.
    """

    def __init__(
        self,
        trie: PhraseTrie,
        allowed: Sequence[Collection[Hashable]],
        prompt_length: int,
        num_beams: int = 1,
    ):
        self.trie = trie
        self.allowed = [frozenset(a) for a in allowed]
        self.protected = [trie.protected(a) for a in self.allowed]
        self.root_banned = [trie.banned_after(0, a, p) for a, p in zip(self.allowed, self.protected)]
        self.prompt_length = prompt_length
        self.num_beams = num_beams

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_length :].tolist()
        for row, tokens in enumerate(generated):
            b = row // self.num_beams
            allowed, protected = self.allowed[b], self.protected[b]
            banned, keep = list(self.root_banned[b]), None
            for start in range(max(0, len(tokens) - self.trie.depth), len(tokens)):
                node, owed = self.trie.walk(tokens[start:], allowed)
                if node is None:
                    continue
                banned += self.trie.banned_after(node, allowed, protected)
                if owed and node in protected:  # let through towards an allowed phrase: finish it
                    must = {t for t, child in self.trie.children[node].items() if child in protected}
                    if must:
                        keep = must if keep is None else (keep & must or keep)
            if keep:  # the allowed path wins over what other matches would ban ("Spa" in "Bath & Spa ...")
                only = torch.full_like(scores[row], -float("inf"))
                only[list(keep)] = scores[row, list(keep)]
                scores[row] = only
            elif banned:
                scores[row, banned] = -float("inf")
        return scores


# a title may be quoted up to a natural cut: before a comma, semicolon, bracket, slash or spaced dash
_TITLE_CUT = re.compile(r"\s*[,;(\[|/]|\s+[-\u2013\u2014]\s")


def title_cuts(title: str) -> set[int]:
    """Where a quotation of ``title`` may close: its end, and each natural cut after at least two words
    ("NOW Foods Rose Hip Seed Oil" of "NOW Foods Rose Hip Seed Oil, 1 ounce")."""
    cuts = {len(title)}
    for match in _TITLE_CUT.finditer(title):
        if len(title[: match.start()].split()) >= MIN_QUOTED_WORDS:
            cuts.add(match.start())
    return cuts


def closing_quote_tokens(tokenizer: Any) -> list[int]:
    """Every token that starts with a double quote (``"``, ``",``, ``".`` ...): what may close a quotation.
    Decodes the whole vocabulary, so callers that build many processors compute it once."""
    return [i for i in range(len(tokenizer)) if tokenizer.decode([i]).startswith('"')]


class QuotedTitlesProcessor(LogitsProcessor):
    """Text inside double quotes copies a title verbatim: the item's or a shown history item's.

    Phrase grounding cannot see a quotation that drifts from one title into another, or respells one
    ("Endless Kicks" for "Endless Kiss"); both read as naming an item the catalog does not have. Inside an
    open quotation (read by :func:`quotations`) the next token must continue, in the tokenizer's own
    spelling, a title of ``titles[b]`` that starts with the quoted text, and a closing quote is allowed only
    at one of :func:`title_cuts`. A quotation that no title starts with (one the model opened mid-word) is
    left alone. Rows are ``b * num_beams + k`` under beam search; ``prompt_length`` is the (left-padded)
    prompt width.

    ``grounding`` (a :class:`GroundedPhrasesProcessor`) applies to every row that is not copying a title:
    a verbatim title names its item whatever brand or category words it contains ("... with Clear Body
    Pump ..." must not be cut at "Clear"), so a quotation is never cut short by a phrase ban.
    """

    def __init__(
        self,
        tokenizer: Any,
        titles: Sequence[Collection[str]],
        prompt_length: int,
        num_beams: int = 1,
        closing: Sequence[int] | None = None,
        grounding: LogitsProcessor | None = None,
    ):
        self.tokenizer = tokenizer
        self.grounding = grounding
        self.titles = [{t.strip(): title_cuts(t.strip()) for t in row if t.strip()} for row in titles]
        self.prompt_length = prompt_length
        self.num_beams = num_beams
        self.closing = list(closing) if closing is not None else closing_quote_tokens(tokenizer)
        self._first_token: dict[str, int] = {}

    def _next_token(self, rest: str) -> int:
        """The tokenizer's first token of ``rest``: the canonical next step of a quotation."""
        token = self._first_token.get(rest)
        if token is None:
            token = self._first_token[rest] = self.tokenizer.encode(rest, add_special_tokens=False)[0]
        return token

    def allowed_tokens(self, generated: Sequence[int], titles: dict[str, set[int]]) -> set[int] | None:
        """Tokens that may follow ``generated``; ``None`` when unconstrained (outside a quotation)."""
        text = self.tokenizer.decode(generated, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        spans = quotations(text, list(titles))
        if not spans or spans[-1].closed:
            return None
        quoted = spans[-1].quoted
        allowed: set[int] = set()
        for title, cuts in titles.items():
            if not title.startswith(quoted):
                continue
            if len(quoted) < len(title):
                allowed.add(self._next_token(title[len(quoted) :]))
            if len(quoted) in cuts:
                allowed.update(self.closing)
        return allowed or None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_length :].tolist()
        keeps = [self.allowed_tokens(t, self.titles[r // self.num_beams]) for r, t in enumerate(generated)]
        raw = scores
        if self.grounding is not None:
            scores = self.grounding(input_ids, scores.clone())
        for row, keep in enumerate(keeps):
            if keep is None:
                continue
            keep_ids = torch.tensor(sorted(keep), device=scores.device)
            if torch.isinf(raw[row, keep_ids]).all():
                continue  # an earlier processor (suppressed tokens) left no copying step: leave the row
            only = torch.full_like(scores[row], -float("inf"))
            only[keep_ids] = raw[row, keep_ids]
            scores[row] = only
        return scores
