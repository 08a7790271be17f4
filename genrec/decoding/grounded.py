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
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from typing import Any

import torch
from transformers import LogitsProcessor

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
