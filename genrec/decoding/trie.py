"""A prefix trie over item codes, stored as per-depth dense tables so beam search never calls Python per beam.

Node ``j`` at depth ``d`` is one distinct code prefix of length ``d`` (depth 0 holds the single root).
``child_tokens[d][j]`` lists the token ids allowed after that prefix (padded with ``-1``) and
``child_nodes[d][j]`` the depth-``d+1`` node each one leads to, so one gather per decoding step gives every
beam's allowed continuations. Depth ``L`` nodes are leaves and map one-to-one onto items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ItemTrie:
    """Valid item token paths. Build with :meth:`from_token_ids`."""

    child_tokens: tuple[torch.Tensor, ...]  # per depth: (num_nodes_d, max_children_d) int64, -1 = none
    child_nodes: tuple[torch.Tensor, ...]  # per depth: (num_nodes_d, max_children_d) int64, -1 = none
    leaf_items: torch.Tensor  # (num_items,) item index of each depth-L node
    token_ids: np.ndarray  # (num_items, L) the codes it was built from
    item_nodes: np.ndarray  # (num_items, L) the depth-(d+1) node on item i's path, column d

    @classmethod
    def from_token_ids(cls, token_ids: np.ndarray | torch.Tensor) -> ItemTrie:
        """Build from an ``(n_items, L)`` table of token ids, row ``i`` being item ``i``'s token path.

        Raises ``ValueError`` when two items share a path: a decoded path must name exactly one item.
        """
        codes = np.asarray(token_ids.cpu() if isinstance(token_ids, torch.Tensor) else token_ids)
        if codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] == 0:
            raise ValueError(f"token_ids must be a non-empty (n_items, L) array, got shape {codes.shape}")
        if not np.issubdtype(codes.dtype, np.integer) or codes.min() < 0:
            raise ValueError("token_ids must hold non-negative integer token ids")
        codes = codes.astype(np.int64)
        n_items, depth = codes.shape
        node = np.zeros(n_items, dtype=np.int64)  # each item's node at the current depth
        num_nodes = 1
        child_tokens, child_nodes, item_nodes = [], [], []
        for d in range(depth):
            # A child is a distinct (parent node, token) pair; np.unique numbers them in sorted order,
            # which groups children by parent and orders each parent's children by token id.
            pairs, child_of_item = np.unique(
                np.stack([node, codes[:, d]], axis=1), axis=0, return_inverse=True
            )
            parent, token = pairs[:, 0], pairs[:, 1]
            counts = np.bincount(parent, minlength=num_nodes)
            rank = np.arange(len(pairs)) - np.concatenate([[0], np.cumsum(counts)[:-1]])[parent]
            tokens = np.full((num_nodes, counts.max()), -1, dtype=np.int64)
            nodes = np.full_like(tokens, -1)
            tokens[parent, rank] = token
            nodes[parent, rank] = np.arange(len(pairs))
            child_tokens.append(torch.from_numpy(tokens))
            child_nodes.append(torch.from_numpy(nodes))
            node, num_nodes = child_of_item.reshape(-1), len(pairs)
            item_nodes.append(node)
        if num_nodes != n_items:
            leaf_count = np.bincount(node, minlength=num_nodes)
            dup = np.flatnonzero(leaf_count[node] > 1)[:2]
            raise ValueError(
                f"items {dup.tolist()} share the token path {codes[dup[0]].tolist()}; "
                "item codes must be unique (add a de-duplication level)"
            )
        leaf_items = np.empty(n_items, dtype=np.int64)
        leaf_items[node] = np.arange(n_items)
        return cls(
            tuple(child_tokens),
            tuple(child_nodes),
            torch.from_numpy(leaf_items),
            codes,
            np.stack(item_nodes, axis=1),
        )

    @property
    def depth(self) -> int:
        """Tokens per item (L)."""
        return len(self.child_tokens)

    @property
    def num_items(self) -> int:
        return len(self.leaf_items)

    def _walk(self, prefix: Sequence[int]) -> int:
        """Node id of ``prefix`` at depth ``len(prefix)``, or -1 when it is not a valid prefix."""
        node = 0
        for d, tok in enumerate(prefix):
            hit = torch.nonzero(self.child_tokens[d][node] == int(tok))
            if len(hit) == 0:
                return -1
            node = int(self.child_nodes[d][node, hit[0, 0]])
        return node

    def allowed_tokens(self, prefix: Sequence[int]) -> list[int]:
        """Token ids that may follow ``prefix`` (empty when the prefix is invalid or complete)."""
        if len(prefix) >= self.depth:
            return []
        node = self._walk(prefix)
        if node < 0:
            return []
        tokens = self.child_tokens[len(prefix)][node]
        return tokens[tokens >= 0].tolist()

    def lookup(self, paths: np.ndarray | torch.Tensor) -> np.ndarray:
        """Item index of each ``(m, L)`` token path; -1 for paths that are not items."""
        paths = np.asarray(paths.cpu() if isinstance(paths, torch.Tensor) else paths).reshape(-1, self.depth)
        out = np.full(len(paths), -1, dtype=np.int64)
        for i, path in enumerate(paths):
            node = self._walk(path)
            if node >= 0:
                out[i] = int(self.leaf_items[node])
        return out

    def blocked_nodes(
        self, exclude: Sequence[Sequence[int]], device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, ...]:
        """Per depth ``d``, a ``(len(exclude), num_nodes_{d+1})`` mask of nodes whose every item is excluded.

        Row ``u`` masks the subtrees that hold only items of ``exclude[u]``: beam search never enters
        them, so a user's beams are spent on items still allowed instead of dying at the last level.
        """
        device = self.leaf_items.device if device is None else device
        rows = [np.unique(np.asarray(items, dtype=np.int64)) for items in exclude]
        for u, items in enumerate(rows):
            if len(items) and (items[0] < 0 or items[-1] >= self.num_items):
                raise ValueError(f"exclude[{u}] has item indices outside [0, {self.num_items})")
        user = np.repeat(np.arange(len(rows)), [len(items) for items in rows])
        items = np.concatenate([*rows, np.zeros(0, dtype=np.int64)])
        masks = []
        for d in range(self.depth):
            num_nodes = len(self.child_tokens[d + 1]) if d + 1 < self.depth else self.num_items
            leaves = np.bincount(self.item_nodes[:, d], minlength=num_nodes)
            hits = np.zeros((len(rows), num_nodes), dtype=np.int64)
            np.add.at(hits, (user, self.item_nodes[items, d]), 1)
            masks.append(torch.from_numpy(hits == leaves[None]).to(device))
        return tuple(masks)

    def to(self, device: torch.device | str) -> ItemTrie:
        """A copy with the tables on ``device`` (beam search gathers from them on the model's device)."""
        return ItemTrie(
            tuple(t.to(device) for t in self.child_tokens),
            tuple(t.to(device) for t in self.child_nodes),
            self.leaf_items.to(device),
            self.token_ids,
            self.item_nodes,
        )
