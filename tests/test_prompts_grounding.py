import random

import pytest

from genrec.data import Catalog, Item, PriceBands, make_synthetic
from genrec.data.attributes import price_bands_of
from genrec.eval.explain import AttributeVocabulary, check_explanation, faithfulness_metrics
from genrec.prompts import verbalize_explanation
from genrec.prompts.grounding import NO_ATTRIBUTES

BANDS = PriceBands((8.0, 20.0))


def _item(item_id, title, brand=None, categories=(), price=None):
    fields = {"brand": brand, "categories": list(categories), "price": price}
    return Item(item_id, title, {k: v for k, v in fields.items() if v not in (None, [])})


RED = _item("A", "OPI Nail Lacquer Big Apple Red", "OPI", ["Beauty", "Makeup", "Nails", "Nail Polish"], 9.0)
TOP = _item("B", "OPI Top Coat", "OPI", ["Beauty", "Makeup", "Nails", "Top Coats"], 11.0)
LASH = _item("C", "Maybelline Great Lash Mascara", "Maybelline", ["Beauty", "Makeup", "Eyes", "Mascara"], 5.0)
OIL = _item("D", "Cococare Coconut Oil", "Cococare", ["Beauty", "Skin Care", "Oils"], 30.0)
BARE = _item("E", "Mystery Gift Box")


def test_shared_brand_category_and_price_band():
    text = verbalize_explanation(TOP, [LASH, RED], BANDS)
    assert text == (
        '"OPI Top Coat" is a mid-range Top Coats product from OPI. It fits your history: you bought OPI '
        'before ("OPI Nail Lacquer Big Apple Red"), 1 of your 2 past items is a Nails product and it is in '
        "the same mid-range price band as 1 of them."
    )


def test_department_category_is_not_a_shared_category():
    # Only "Beauty" is shared, which every item has; no brand or band in common either.
    assert (
        verbalize_explanation(OIL, [LASH], BANDS)
        == '"Cococare Coconut Oil" is a premium Oils product from Cococare.'
    )


def test_missing_metadata_gives_a_shorter_explanation():
    assert verbalize_explanation(BARE, [RED, TOP], BANDS) == NO_ATTRIBUTES
    no_brand = _item("F", "Plain Nail File", categories=["Beauty", "Nails"])
    assert verbalize_explanation(no_brand, [RED]) == (
        '"Plain Nail File" is a Nails product. It fits your history: your past item is a Nails product.'
    )
    eyes = _item("H", "Eye Pencil", categories=["Beauty", "Eyes"])
    assert verbalize_explanation(eyes, [LASH, LASH]).endswith("all 2 of your past items are Eyes products.")
    assert verbalize_explanation(eyes, [LASH, RED]).endswith("1 of your 2 past items is an Eyes product.")
    brand_only = _item("G", "X", brand="OPI")  # a one-word title is not quoted
    assert verbalize_explanation(brand_only, []) == "This item is made by OPI."


def test_template_explanations_are_faithful():
    catalog = Catalog([RED, TOP, LASH, OIL, BARE])
    vocab = AttributeVocabulary.from_catalog(catalog, BANDS)
    for item in catalog:
        for history in ([], [RED], [LASH, OIL, BARE], list(catalog)):
            result = check_explanation(verbalize_explanation(item, history, BANDS), item, history, vocab)
            assert result.faithful, (item.id, [h.id for h in history], result.unsupported)


def test_never_names_attributes_the_catalog_lacks():
    """Strip random fields from synthetic items: the text names only what is left, per the checker and per
    the clauses that would state the removed values."""
    rng = random.Random(0)
    full = make_synthetic().catalog
    stripped = []
    for item in full:
        fields = {
            k: v
            for k, v in item.fields.items()
            if k not in ("brand", "categories", "price") or rng.random() < 0.5
        }
        stripped.append(Item(item.id, item.title if rng.random() < 0.7 else "", fields))
    catalog = Catalog(stripped)
    bands = price_bands_of(full)
    vocab = AttributeVocabulary.from_catalog(catalog, bands)
    results = []
    for _ in range(300):
        item, *history = rng.sample(stripped, rng.randint(1, 8))
        text = verbalize_explanation(item, history, bands)
        results.append(check_explanation(text, item, history, vocab))
        brand = full[full.index_of(item.id)].fields["brand"]  # titles contain it too, so check the clauses
        if "brand" not in item.fields:
            assert f"from {brand}" not in text and "made by" not in text and f"bought {brand}" not in text
        if "price" not in item.fields:
            assert not any(band in text for band in ("budget", "mid-range", "premium"))
    assert faithfulness_metrics(results) == {"faithfulness": 1.0, "hallucination_rate": 0.0}


@pytest.mark.slow
def test_template_is_faithful_on_beauty(beauty_dir):
    from genrec.data import load_amazon_p5

    ds = load_amazon_p5(beauty_dir)
    vocab = AttributeVocabulary.from_catalog(ds.catalog)
    examples = ds.test_examples()
    results = []
    for u in range(0, len(examples), 75):  # 299 test users
        history = [ds.catalog[i] for i in examples.histories[u][-10:]]
        item = ds.catalog[int(examples.targets[u])]
        results.append(
            check_explanation(verbalize_explanation(item, history, vocab.price_bands), item, history, vocab)
        )
    assert faithfulness_metrics(results) == {"faithfulness": 1.0, "hallucination_rate": 0.0}
