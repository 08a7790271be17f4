"""A seeded synthetic shop: text, thumbnails and sequences with structure a sequence model can learn.

Why: the built-in demo and the tests need a dataset that is small, license-free and has a known
signal. Items belong to categories (which fix the thumbnail's shape and hue and the title's nouns), brands
(a small hue shift and a corner badge), styles (the thumbnail's background and a word in the description)
and price bands (budget, mid-range, premium: the catalog's price terciles). Users have latent tastes for
each of the four, and their sequences follow habits: each item has a few "follow-up" items (accessories,
refills, the next in a series) and categories follow a Markov chain. Popularity alone therefore ranks
poorly, a model that reads the last items does well, and content (text and thumbnails) carries the tastes,
so content-based semantic IDs help. Everything is labelled synthetic.
"""

from __future__ import annotations

import colorsys
import math
from pathlib import Path

import numpy as np

from genrec.data.dataset import Catalog, Item, SequenceDataset
from genrec.utils.io import atomic_write

# One entry per category: name, thumbnail shape, adjectives and nouns for titles and descriptions.
CATEGORIES: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "Skin Care",
        "circle",
        ("hydrating", "gentle", "soothing", "radiant", "daily"),
        ("moisturizer", "serum", "cleanser", "toner", "face mask"),
    ),
    (
        "Fragrance",
        "diamond",
        ("floral", "woody", "fresh", "citrus", "amber"),
        ("eau de parfum", "body mist", "cologne", "perfume oil", "scented candle"),
    ),
    (
        "Hair Care",
        "triangle",
        ("repairing", "volumizing", "smoothing", "curl-defining", "clarifying"),
        ("shampoo", "conditioner", "hair oil", "styling gel", "hair mask"),
    ),
    (
        "Makeup",
        "square",
        ("matte", "long-wear", "satin", "sheer", "velvet"),
        ("lipstick", "foundation", "mascara", "eyeliner", "blush"),
    ),
    (
        "Nail Care",
        "star",
        ("glossy", "quick-dry", "chip-resistant", "pastel", "metallic"),
        ("nail polish", "top coat", "base coat", "nail file", "cuticle oil"),
    ),
    (
        "Tools",
        "hexagon",
        ("ergonomic", "compact", "professional", "heated", "travel"),
        ("brush set", "hair dryer", "curling iron", "tweezers", "mirror"),
    ),
    (
        "Bath",
        "ring",
        ("relaxing", "foaming", "exfoliating", "lavender", "mineral"),
        ("bath bomb", "body wash", "bath salts", "loofah", "body scrub"),
    ),
    (
        "Grooming",
        "cross",
        ("precision", "cooling", "sensitive", "classic", "cordless"),
        ("razor", "beard oil", "shaving cream", "trimmer", "aftershave"),
    ),
    (
        "Sun Care",
        "sun",
        ("waterproof", "broad-spectrum", "lightweight", "tinted", "after-sun"),
        ("sunscreen", "sun stick", "tanning lotion", "aloe gel", "lip balm"),
    ),
    (
        "Wellness",
        "heart",
        ("calming", "energizing", "herbal", "organic", "vitamin"),
        ("supplement", "tea blend", "massage oil", "sleep spray", "diffuser"),
    ),
    (
        "Kids",
        "moon",
        ("tear-free", "playful", "mild", "fruity", "colorful"),
        ("kids shampoo", "bubble bath", "detangler", "kids toothpaste", "hair clips"),
    ),
    (
        "Oral Care",
        "drop",
        ("whitening", "mint", "enamel-safe", "charcoal", "sonic"),
        ("toothpaste", "toothbrush", "mouthwash", "floss", "whitening strips"),
    ),
)

# Styles: name and thumbnail background. A user favours one; the item's description names it.
STYLES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("classic", (245, 245, 240)),
    ("pastel", (250, 226, 236)),
    ("nordic", (218, 232, 248)),
    ("earthy", (232, 220, 196)),
)
# Price tiers: the multiplier on the category's price level. Tiers are wide apart, so the catalog's
# price terciles (genrec.data.attributes.PriceBands, the bands explanations name) recover them.
PRICE_TIERS = (0.45, 1.0, 2.2)
TASTE_BOOST = 8.0  # weight multiplier for an item matching a user's favourite brand, style or price tier

_BRAND_SYLLABLES = ("lu", "ma", "ve", "ra", "no", "ki", "sol", "bel", "tor", "zi", "an", "el", "or", "vi")


def make_synthetic(
    num_users: int = 1000,
    num_items: int = 500,
    num_categories: int = 8,
    seed: int = 0,
    image_dir: str | Path | None = None,
    image_size: int = 64,
    num_brands: int = 24,
    min_length: int = 5,
    max_length: int = 30,
    follow_prob: float = 0.5,
) -> SequenceDataset:
    """Generate the synthetic dataset. Same arguments -> identical dataset (and identical PNG files).

    ``follow_prob`` is the chance that the next item is one of the previous item's follow-ups; the rest
    of the time the next category comes from a Markov chain mixed with the user's taste, and the item
    from that category by popularity, boosted for each of the user's favourite brand, style and price tier.
    """
    if not 1 <= num_categories <= len(CATEGORIES):
        raise ValueError(f"num_categories must be in 1..{len(CATEGORIES)}, got {num_categories}")
    if num_items < 4 * num_categories:
        raise ValueError(f"num_items must be >= 4 per category ({4 * num_categories}), got {num_items}")
    if num_brands < 1:
        raise ValueError(f"num_brands must be >= 1, got {num_brands}")
    if not 3 <= min_length <= max_length:
        raise ValueError(f"need 3 <= min_length <= max_length, got {min_length}, {max_length}")
    if max_length > num_items:
        raise ValueError(f"max_length ({max_length}) exceeds num_items ({num_items}); sequences never repeat")
    rng = np.random.default_rng(seed)

    brands = _brand_names(rng, num_brands)
    category = np.sort(np.arange(num_items) % num_categories)  # contiguous blocks, near-equal sizes
    brand = rng.integers(num_brands, size=num_items)
    style = rng.integers(len(STYLES), size=num_items)
    tier = rng.integers(len(PRICE_TIERS), size=num_items)
    popularity = _popularity(rng, category, num_categories)
    follow_ups = _follow_ups(rng, category, num_categories)
    transition = _category_transitions(rng, num_categories)
    traits = np.stack([brand, style, tier], axis=1)  # the item side of the users' tastes
    trait_counts = (num_brands, len(STYLES), len(PRICE_TIERS))

    items = _make_items(rng, category, brand, brands, style, tier, num_categories)
    if image_dir is not None:
        image_dir = Path(image_dir).resolve()
        for i, item in enumerate(items):
            path = image_dir / f"{item.id}.png"
            _draw_thumbnail(
                int(category[i]),
                int(brand[i]),
                int(style[i]),
                num_categories,
                num_brands,
                i,
                image_size,
                path,
            )
            item.image = str(path)

    users, sequences = [], []
    for u in range(num_users):
        users.append(f"user_{u + 1:05d}")
        sequences.append(
            _user_sequence(
                rng,
                category,
                traits,
                trait_counts,
                popularity,
                follow_ups,
                transition,
                num_categories,
                min_length,
                max_length,
                follow_prob,
            )
        )
    return SequenceDataset(
        "synthetic",
        Catalog(items, source="synthetic"),
        users,
        sequences,
        synthetic=True,
        source=f"make_synthetic(seed={seed})",
    )


def _brand_names(rng: np.random.Generator, num_brands: int) -> list[str]:
    names: list[str] = []
    while len(names) < num_brands:
        parts = rng.choice(_BRAND_SYLLABLES, size=int(rng.integers(2, 4)))
        name = "".join(parts).capitalize()
        if name not in names:
            names.append(name)
    return names


def _popularity(rng: np.random.Generator, category: np.ndarray, num_categories: int) -> np.ndarray:
    """Zipf-like popularity within each category (normalised per category)."""
    pop = np.zeros(len(category))
    for c in range(num_categories):
        idx = np.flatnonzero(category == c)
        ranks = rng.permutation(len(idx)) + 1
        weights = 1.0 / ranks**0.8
        pop[idx] = weights / weights.sum()
    return pop


def _follow_ups(rng: np.random.Generator, category: np.ndarray, num_categories: int) -> np.ndarray:
    """Three follow-up items per item: two from its own category, one from the 'next' category."""
    n = len(category)
    out = np.empty((n, 3), dtype=np.int64)
    members = [np.flatnonzero(category == c) for c in range(num_categories)]
    for i in range(n):
        c = category[i]
        same = members[c][members[c] != i]
        out[i, :2] = rng.choice(same, size=2, replace=False)
        out[i, 2] = rng.choice(members[(c + 1) % num_categories])
    return out


def _category_transitions(rng: np.random.Generator, num_categories: int) -> np.ndarray:
    """A sparse-ish Markov chain: staying is likely, and each category has one favoured successor."""
    t = rng.dirichlet(np.full(num_categories, 0.3), size=num_categories)
    t += np.eye(num_categories) * 1.5
    t[np.arange(num_categories), (np.arange(num_categories) + 1) % num_categories] += 1.0
    return t / t.sum(axis=1, keepdims=True)


def _user_sequence(
    rng: np.random.Generator,
    category: np.ndarray,
    traits: np.ndarray,
    trait_counts: tuple[int, ...],
    popularity: np.ndarray,
    follow_ups: np.ndarray,
    transition: np.ndarray,
    num_categories: int,
    min_length: int,
    max_length: int,
    follow_prob: float,
) -> np.ndarray:
    taste = rng.dirichlet(np.full(num_categories, 0.5))
    favourites = np.array([rng.integers(n) for n in trait_counts])  # brand, style, price tier
    boost = TASTE_BOOST ** (traits == favourites).sum(axis=1)
    length = int(rng.integers(min_length, max_length + 1))
    seen = np.zeros(len(category), dtype=bool)
    seq: list[int] = []
    c = int(rng.choice(num_categories, p=taste))
    while len(seq) < length:
        nxt = -1
        if seq and rng.random() < follow_prob:
            options = follow_ups[seq[-1]][~seen[follow_ups[seq[-1]]]]
            if len(options):
                nxt = int(rng.choice(options, p=boost[options] / boost[options].sum()))
        if nxt < 0:
            if seq:
                p = 0.7 * transition[category[seq[-1]]] + 0.3 * taste
                c = int(rng.choice(num_categories, p=p / p.sum()))
            w = np.where((category == c) & ~seen, popularity * boost, 0.0)
            if w.sum() == 0:  # category exhausted: fall back to any unseen item
                w = np.where(~seen, popularity * boost, 0.0)
            nxt = int(rng.choice(len(w), p=w / w.sum()))
        seen[nxt] = True
        seq.append(nxt)
    return np.asarray(seq, dtype=np.int64)


def _make_items(
    rng: np.random.Generator,
    category: np.ndarray,
    brand: np.ndarray,
    brands: list[str],
    style: np.ndarray,
    tier: np.ndarray,
    num_categories: int,
) -> list[Item]:
    items: list[Item] = []
    titles: set[str] = set()
    price_level = rng.uniform(12.0, 24.0, size=num_categories)
    for i, (c, b) in enumerate(zip(category, brand)):
        cat_name, _, adjectives, nouns = CATEGORIES[c]
        adj, adj2 = rng.choice(adjectives, size=2, replace=False)
        noun = str(rng.choice(nouns))
        title = f"{brands[b]} {adj.capitalize()} {noun.title()}"
        variant = 2
        base = title
        while title in titles:  # keep titles unique: text-based semantic ids need distinct items
            title = f"{base} {variant}"
            variant += 1
        titles.add(title)
        price = round(float(price_level[c] * PRICE_TIERS[tier[i]] * rng.lognormal(0.0, 0.12)), 2)
        style_name = STYLES[style[i]][0]
        description = (
            f"A {adj} and {adj2} {noun} from {brands[b]} in {style_name} style, part of the "
            f"{cat_name.lower()} range. Synthetic item for demos and tests."
        )
        items.append(
            Item(
                id=f"s{i + 1:05d}",
                title=title,
                fields={
                    "category": cat_name,
                    "categories": ["Synthetic", cat_name],
                    "brand": brands[b],
                    "price": price,
                    "style": style_name,
                    "description": description,
                    "synthetic": True,
                },
            )
        )
    return items


def category_color(c: int, num_categories: int, b: int = 0, num_brands: int = 1) -> tuple[int, int, int]:
    """The thumbnail colour: category sets the hue, brand shifts it a little."""
    hue = (c / num_categories + 0.06 * (b / max(num_brands, 1) - 0.5)) % 1.0
    r, g, bl = colorsys.hsv_to_rgb(hue, 0.75, 0.9)
    return int(r * 255), int(g * 255), int(bl * 255)


def read_thumbnail_labels(images: np.ndarray, num_categories: int) -> tuple[np.ndarray, np.ndarray]:
    """Category and style a synthetic thumbnail shows, read off its pixels: ``(category, style)`` per image.

    Why: generated thumbnails are judged by what a viewer would see, not by a learned model that could
    share the generator's blind spots. The background (border median) names the style; the median colour
    of the foreground (pixels far from the background, badge corner excluded) names the category by hue.
    ``images`` are ``(N, H, W, 3)``, uint8 or floats in [0, 1]; an image with no saturated foreground gets
    category -1 (unreadable).
    """
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3), got shape {x.shape}")
    if x.max(initial=0.0) <= 1.0:
        x = x * 255.0
    n, size = x.shape[0], x.shape[1]
    border = np.concatenate([x[:, :, 0], x[:, -1, :]], axis=1)  # left column, bottom row (no badge)
    background = np.median(border, axis=1)
    palette = np.array([colour for _, colour in STYLES], dtype=np.float64)
    style = np.abs(background[:, None, :] - palette[None]).sum(-1).argmin(1)
    badge = max(2, size // 8) + 2
    category = np.full(n, -1, dtype=np.int64)
    centres = np.arange(num_categories) / num_categories
    for k in range(n):
        pixels = x[k].copy()
        pixels[:badge, size - badge - 1 :] = background[k]
        fg = pixels.reshape(-1, 3)
        fg = fg[np.abs(fg - background[k]).sum(1) > 60]
        if len(fg) < max(4, size * size // 100):
            continue
        hue, saturation, _ = colorsys.rgb_to_hsv(*(np.median(fg, axis=0) / 255.0))
        if saturation < 0.3:
            continue
        distance = np.abs(hue - centres)
        category[k] = int(np.minimum(distance, 1.0 - distance).argmin())
    return category, style


def _draw_thumbnail(
    c: int, b: int, style: int, num_categories: int, num_brands: int, item_index: int, size: int, path: Path
) -> None:
    from PIL import Image, ImageDraw

    shape = CATEGORIES[c][1]
    color = category_color(c, num_categories, b, num_brands)
    badge = category_color(b, num_brands)  # brand colour, independent of the category hue
    background = STYLES[style][1]
    img = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(img)
    # Small per-item jitter in size and position so items of one category are not pixel-identical.
    jitter = np.random.default_rng(item_index).uniform(-0.06, 0.06, size=3)
    cx, cy = size * (0.5 + jitter[0]), size * (0.5 + jitter[1])
    r = size * (0.32 + jitter[2])
    _draw_shape(draw, shape, cx, cy, r, color, background)
    s = max(2, size // 8)
    draw.rectangle([size - s - 2, 2, size - 3, s + 1], fill=badge)
    with atomic_write(path, "wb") as fh:
        img.save(fh, format="PNG")


def _polygon(
    cx: float, cy: float, r: float, n: int, rotation: float = -math.pi / 2
) -> list[tuple[float, float]]:
    return [
        (cx + r * math.cos(rotation + 2 * math.pi * k / n), cy + r * math.sin(rotation + 2 * math.pi * k / n))
        for k in range(n)
    ]


def _draw_shape(
    draw,
    shape: str,
    cx: float,
    cy: float,
    r: float,
    color: tuple[int, int, int],
    background: tuple[int, int, int],
) -> None:
    box = [cx - r, cy - r, cx + r, cy + r]
    if shape == "circle":
        draw.ellipse(box, fill=color)
    elif shape == "square":
        draw.rectangle([cx - 0.85 * r, cy - 0.85 * r, cx + 0.85 * r, cy + 0.85 * r], fill=color)
    elif shape == "triangle":
        draw.polygon(_polygon(cx, cy, r, 3), fill=color)
    elif shape == "diamond":
        draw.polygon(_polygon(cx, cy, r, 4), fill=color)
    elif shape == "hexagon":
        draw.polygon(_polygon(cx, cy, r, 6, 0.0), fill=color)
    elif shape == "star":
        pts = [
            (
                cx + rad * math.cos(-math.pi / 2 + k * math.pi / 5),
                cy + rad * math.sin(-math.pi / 2 + k * math.pi / 5),
            )
            for k, rad in enumerate([r, 0.45 * r] * 5)
        ]
        draw.polygon(pts, fill=color)
    elif shape == "ring":
        draw.ellipse(box, outline=color, width=max(2, int(r / 3)))
    elif shape == "cross":
        w = r / 3
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=color)
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=color)
    elif shape == "sun":
        draw.ellipse([cx - 0.55 * r, cy - 0.55 * r, cx + 0.55 * r, cy + 0.55 * r], fill=color)
        for x, y in _polygon(cx, cy, r, 8):
            draw.line([(cx, cy), (x, y)], fill=color, width=max(1, int(r / 8)))
    elif shape == "heart":
        draw.ellipse([cx - r, cy - 0.8 * r, cx, cy + 0.2 * r], fill=color)
        draw.ellipse([cx, cy - 0.8 * r, cx + r, cy + 0.2 * r], fill=color)
        draw.polygon(
            [(cx - 0.97 * r, cy - 0.15 * r), (cx + 0.97 * r, cy - 0.15 * r), (cx, cy + r)], fill=color
        )
    elif shape == "moon":
        draw.ellipse(box, fill=color)
        draw.ellipse([cx - 0.4 * r, cy - r, cx + 1.4 * r, cy + 0.8 * r], fill=background)
    elif shape == "drop":
        draw.ellipse([cx - 0.7 * r, cy - 0.2 * r, cx + 0.7 * r, cy + r], fill=color)
        draw.polygon([(cx, cy - r), (cx - 0.68 * r, cy + 0.3 * r), (cx + 0.68 * r, cy + 0.3 * r)], fill=color)
    else:  # pragma: no cover - CATEGORIES only names the shapes above
        raise ValueError(f"unknown shape {shape!r}")
