"""Constrained decoding: every recommendation is a real catalog item, read off a prefix trie of codes."""

from genrec.decoding.beam_search import constrained_beam_search, hf_constrained_generate
from genrec.decoding.merge import merge_beams
from genrec.decoding.trie import ItemTrie

__all__ = ["ItemTrie", "constrained_beam_search", "hf_constrained_generate", "merge_beams"]
