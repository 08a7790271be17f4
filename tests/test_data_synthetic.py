import numpy as np
import pytest
from PIL import Image

from genrec.data import make_synthetic
from genrec.data.attributes import ItemAttributes, price_bands_of
from genrec.data.synthetic import CATEGORIES, PRICE_TIERS, STYLES, category_color, read_thumbnail_labels

SMALL = dict(num_users=200, num_items=120, num_categories=6)


def _same(a, b):
    return (
        a.users == b.users
        and all(np.array_equal(x, y) for x, y in zip(a.sequences, b.sequences))
        and [(i.id, i.title, i.fields) for i in a.catalog] == [(i.id, i.title, i.fields) for i in b.catalog]
    )


def test_same_seed_same_dataset(tmp_path):
    a = make_synthetic(**SMALL, seed=3, image_dir=tmp_path / "a")
    b = make_synthetic(**SMALL, seed=3, image_dir=tmp_path / "b")
    assert _same(a, b)
    for x, y in zip(a.catalog, b.catalog):
        assert open(x.image, "rb").read() == open(y.image, "rb").read()
    assert not _same(a, make_synthetic(**SMALL, seed=4))


def test_labelled_synthetic_and_valid():
    ds = make_synthetic(**SMALL)
    assert ds.name == "synthetic" and ds.synthetic and "synthetic" in repr(ds)
    assert (ds.num_users, ds.num_items) == (200, 120)
    assert all(item.fields["synthetic"] is True for item in ds.catalog)
    assert len(set(ds.catalog.titles)) == ds.num_items  # unique titles
    lengths = [len(s) for s in ds.sequences]
    assert min(lengths) >= 5 and max(lengths) <= 30
    assert all(len(np.unique(s)) == len(s) for s in ds.sequences)  # no repeats within a user
    categories = {item.fields["category"] for item in ds.catalog}
    assert categories == {c[0] for c in CATEGORIES[:6]}
    assert all(item.image is None for item in ds.catalog)


def test_thumbnails_follow_category(tmp_path):
    ds = make_synthetic(**SMALL, image_dir=tmp_path)
    by_category = {}
    for item in ds.catalog:
        with Image.open(item.image) as img:
            assert img.format == "PNG" and img.size == (64, 64)
            pixels = np.asarray(img.convert("RGB"), dtype=float).reshape(-1, 3)
        # the dominant non-background colour is the category hue (up to the small brand shift)
        background = dict(STYLES)[item.fields["style"]]
        assert tuple(pixels[-1]) == background  # the bottom-right corner shows the style's background
        fg = pixels[np.abs(pixels - background).sum(1) > 60]
        by_category.setdefault(item.fields["category"], []).append(np.median(fg, axis=0))
    names = [c[0] for c in CATEGORIES[:6]]
    centres = {c: np.mean(v, axis=0) for c, v in by_category.items()}
    for c, colours in by_category.items():
        for colour in colours:
            nearest = min(names, key=lambda n: np.abs(centres[n] - colour).sum())
            assert nearest == c
    assert category_color(0, 6) != category_color(1, 6)


def test_sequence_signal_beats_popularity():
    """The last item predicts the next far better than popularity does (the point of the generator)."""
    ds = make_synthetic(num_users=600, num_items=200, num_categories=8, seed=1)
    n = ds.num_items
    transitions = np.zeros((n, n))
    for seq in ds.train_sequences():
        np.add.at(transitions, (seq[:-1], seq[1:]), 1)
    popularity = ds.item_popularity().astype(float)
    test = ds.test_examples()

    def recall_at_10(score):
        hits = 0
        for history, target in zip(test.histories, test.targets):
            s = score(history).copy()
            s[history] = -np.inf
            hits += target in np.argsort(-s)[:10]
        return hits / len(test)

    pop = recall_at_10(lambda h: popularity)
    markov = recall_at_10(lambda h: transitions[h[-1]] + 1e-6 * popularity)
    assert markov > 2.5 * pop and markov > 0.3


def test_users_follow_style_and_price_tastes():
    """Style and price band are latent tastes: a user's items concentrate on one of each, well above users
    who draw the same number of items from everyone's interactions; and the catalog's price terciles (the
    bands explanations name) recover the price tiers."""
    ds = make_synthetic(num_users=300, num_items=200, seed=2)
    bands = price_bands_of(ds.catalog)
    band = np.array([ItemAttributes.of(item, bands).price_band for item in ds.catalog])
    level = np.median([item.fields["price"] for item in ds.catalog])
    tier = [
        np.argmin(np.abs(np.log(item.fields["price"] / level / np.array(PRICE_TIERS)))) for item in ds.catalog
    ]
    assert np.mean(np.array(["budget", "mid-range", "premium"])[tier] == band) > 0.85
    style = np.array([item.fields["style"] for item in ds.catalog])
    assert all(item.fields["style"] in item.fields["description"] for item in ds.catalog)

    rng = np.random.default_rng(0)
    interactions = np.concatenate(ds.sequences)
    control = [rng.choice(interactions, len(s)) for s in ds.sequences]

    def top_share(values, sequences):
        """Mean share of a user's items that have the user's most frequent value."""
        return np.mean([np.unique(values[s], return_counts=True)[1].max() / len(s) for s in sequences])

    for attribute, values in (("style", style), ("price band", band)):
        assert top_share(values, ds.sequences) > top_share(values, control) + 0.07, attribute


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_categories": 13}, "num_categories must be in 1..12"),
        ({"num_items": 10, "num_categories": 8}, "num_items must be >= 4 per category"),
        ({"min_length": 2}, "need 3 <= min_length"),
        ({"num_items": 40, "num_categories": 4, "max_length": 50}, "exceeds num_items"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic(num_users=5, **kwargs)


@pytest.mark.parametrize("size", [64, 32, 16])
def test_thumbnail_labels_read_back_category_and_style(tmp_path, size):
    """The pixel reader the demo judges generated thumbnails with recovers what every real one was drawn
    from, at each size the demo may generate; a blank image has no readable category."""
    ds = make_synthetic(num_users=5, num_items=120, num_categories=8, image_dir=tmp_path, image_size=size)
    images = np.stack([np.asarray(Image.open(item.image).convert("RGB")) for item in ds.catalog])
    category, style = read_thumbnail_labels(images, 8)
    names, styles = [c[0] for c in CATEGORIES], [s for s, _ in STYLES]
    assert category.tolist() == [names.index(item.fields["category"]) for item in ds.catalog]
    assert style.tolist() == [styles.index(item.fields["style"]) for item in ds.catalog]
    blank = np.full((1, size, size, 3), 245, dtype=np.uint8)
    assert read_thumbnail_labels(blank, 8)[0].tolist() == [-1]
    assert read_thumbnail_labels(images.astype(np.float32) / 255.0, 8)[0].tolist() == category.tolist()
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        read_thumbnail_labels(images[..., 0], 8)
