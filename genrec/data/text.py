"""Text cleaning for every loader: source titles and reviews carry HTML entities and stray whitespace."""

from __future__ import annotations

import html
import re

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
