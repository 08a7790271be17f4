"""ItemTrie: every stored path is an item, every item is reachable, bad code tables fail clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrec.decoding import ItemTrie


def random_codes(n_items: int = 300, depth: int = 3, base: int = 6, seed: int = 0) -> np.ndarray:
    """Unique random code rows, offset per level like SID tokens (level d uses ids 100*d + code)."""
    rng = np.random.default_rng(seed)
    codes = np.unique(rng.integers(0, base, size=(n_items * 2, depth)), axis=0)
    codes = codes[rng.permutation(len(codes))[:n_items]]
    return codes + 100 * np.arange(depth)


def all_paths(trie: ItemTrie) -> list[tuple[tuple[int, ...], int]]:
    """Depth-first walk of the dense tables: (token path, item) for every leaf."""
    out = []

    def walk(depth: int, node: int, prefix: tuple[int, ...]) -> None:
        if depth == trie.depth:
            out.append((prefix, int(trie.leaf_items[node])))
            return
        for tok, child in zip(
            trie.child_tokens[depth][node].tolist(), trie.child_nodes[depth][node].tolist()
        ):
            if child >= 0:
                walk(depth + 1, child, (*prefix, tok))

    walk(0, 0, ())
    return out


def test_every_path_is_an_item_and_every_item_is_reachable():
    codes = random_codes()
    trie = ItemTrie.from_token_ids(codes)
    paths = all_paths(trie)
    assert len(paths) == len(codes) == trie.num_items
    for path, item in paths:
        assert path == tuple(codes[item])
    assert sorted(item for _, item in paths) == list(range(len(codes)))


def test_tables_pad_with_minus_one_and_children_are_sorted():
    trie = ItemTrie.from_token_ids(random_codes())
    for tokens, nodes in zip(trie.child_tokens, trie.child_nodes):
        assert ((tokens < 0) == (nodes < 0)).all()
        for row in tokens:
            valid = row[row >= 0]
            assert valid.numel() > 0 and torch.equal(valid, valid.sort().values)
            assert (row[valid.numel() :] == -1).all()  # padding only at the end


def test_allowed_tokens_and_lookup():
    codes = np.array([[1, 5, 9], [1, 5, 8], [1, 6, 9], [2, 5, 9]])
    trie = ItemTrie.from_token_ids(codes)
    assert trie.allowed_tokens([]) == [1, 2]
    assert trie.allowed_tokens([1]) == [5, 6]
    assert trie.allowed_tokens([1, 5]) == [8, 9]
    assert trie.allowed_tokens([2, 6]) == []  # not a prefix
    assert trie.allowed_tokens([1, 5, 9]) == []  # complete
    np.testing.assert_array_equal(trie.lookup(codes), np.arange(4))
    np.testing.assert_array_equal(trie.lookup([[2, 5, 8], [1, 6, 9]]), [-1, 2])


def test_duplicate_paths_raise():
    with pytest.raises(ValueError, match="share the token path"):
        ItemTrie.from_token_ids(np.array([[1, 2], [3, 4], [1, 2]]))


@pytest.mark.parametrize("bad", [np.zeros((0, 3), dtype=int), np.zeros(4, dtype=int), np.array([[1, -2]])])
def test_bad_tables_raise(bad):
    with pytest.raises(ValueError, match="token_ids"):
        ItemTrie.from_token_ids(bad)
