import itertools
import math
import random

import pytest

from genrec.data import Catalog, Item, PriceBands
from genrec.eval.explain import (
    Attribute,
    AttributeVocabulary,
    bleu,
    check_explanation,
    explanation_metrics,
    faithfulness_metrics,
    feature_coverage_ratio,
    feature_diversity,
    feature_matching_ratio,
    find_features,
    metric_tokens,
    rouge,
    unique_sentence_ratio,
)

# -- text metrics: known answers computed by hand ------------------------------------------------
# Pair 1: hypothesis "the cat sat on the mat" vs "the cat is on the mat": clipped n-gram matches
# 5/6, 3/5, 1/4, 0/3. Pair 2 is identical (4 tokens): 4/4, 3/3, 2/2, 1/1. Corpus-level sums:
# p1 = 9/10, p2 = 6/8, p3 = 3/6, p4 = 1/4; both sides 10 tokens, so no brevity penalty.
REFS = ["The cat is on the mat", "the strings sound great"]
HYPS = ["the cat sat on the mat", "The strings sound great"]


def test_bleu_is_corpus_level_in_percent():
    assert bleu(REFS, HYPS, max_order=1) == pytest.approx(90.0)
    assert bleu(REFS, HYPS, max_order=4) == pytest.approx(100 * (0.9 * 0.75 * 0.5 * 0.25) ** 0.25)
    # Sentence by sentence the first pair has no 4-gram match: unsmoothed BLEU-4 is 0, the corpus is not.
    assert bleu(REFS[:1], HYPS[:1]) == 0.0


def test_bleu_brevity_penalty():
    # 2 of 6 reference tokens produced, both correct: BP = exp(1 - 6/2).
    assert bleu(["the cat sat on the mat"], ["the cat"], max_order=1) == pytest.approx(100 * math.exp(-2))


def test_rouge_is_the_mean_of_sentence_f_scores():
    # Pair 1: ROUGE-1 F = 5/6, ROUGE-2 F = 3/5, LCS "the cat on the mat" -> ROUGE-L F = 5/6; pair 2: all 1.
    scores = rouge(REFS, HYPS)
    assert scores["rouge1"] == pytest.approx(100 * (5 / 6 + 1) / 2)
    assert scores["rouge2"] == pytest.approx(100 * (3 / 5 + 1) / 2)
    assert scores["rougeL"] == pytest.approx(100 * (5 / 6 + 1) / 2)


def test_metric_tokens_lowercase_words_and_punctuation():
    assert metric_tokens("Don’t stop!!! Great (value), ok...") == [
        "don't", "stop", "!", "great", "(", "value", ")", ",", "ok", ".",
    ]  # fmt: skip


def test_unique_sentence_ratio_compares_tokens():
    assert unique_sentence_ratio(["Great strings.", "great  strings .", "Good price"]) == pytest.approx(2 / 3)


def test_text_metrics_reject_mismatched_inputs():
    with pytest.raises(ValueError, match="2 explanations but 1 references"):
        bleu(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="no explanations"):
        rouge([], [])


# -- feature metrics (PEPLER definitions) ---------------------------------------------------------


def test_find_features_longest_match():
    found = find_features(
        ["The sound quality is great", "nice price, nice sound", "love it"],
        ["sound", "price", "Sound Quality", "strings"],
    )
    assert found == [{"sound quality"}, {"price", "sound"}, set()]


def test_fmr_fcr_div_known_answers():
    found = [{"a", "b"}, {"a"}, {"b", "c"}]
    assert feature_matching_ratio(found, ["a", "b", "a"]) == pytest.approx(1 / 3)
    assert feature_coverage_ratio(found, 6) == pytest.approx(3 / 6)
    assert feature_diversity(found) == pytest.approx((1 + 1 + 0) / 3)  # pairs share {a}, {b}, nothing


def test_fmr_accepts_several_reference_features_and_skips_none():
    found = [{"opi"}, {"mascara"}, set()]
    assert feature_matching_ratio(found, [{"OPI", "Nail Polish"}, "eyes", None]) == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match="no output has a reference feature"):
        feature_matching_ratio([set()], [None])


def _div_double_loop(found):  # PEPLER's utils.feature_diversity, verbatim in behaviour
    total = sum(len(x & y) for x, y in itertools.combinations(found, 2))
    return total / (len(found) * (len(found) - 1) / 2)


def test_feature_diversity_matches_pepler_double_loop():
    rng = random.Random(0)
    for _ in range(20):
        found = [set(rng.sample("abcdefg", rng.randint(0, 4))) for _ in range(rng.randint(2, 12))]
        assert feature_diversity(found) == pytest.approx(_div_double_loop(found))
    assert feature_diversity([{"a"}]) == 0.0


def test_explanation_metrics_keys():
    metrics = explanation_metrics(
        HYPS, references=REFS, features=["cat", "strings", "mat"], reference_features=["mat", "strings"]
    )
    assert set(metrics) == {"usr", "bleu1", "bleu4", "rouge1", "rouge2", "rougeL", "fcr", "div", "fmr"}
    assert metrics["fmr"] == 1.0 and metrics["fcr"] == pytest.approx(1.0) and metrics["usr"] == 1.0
    assert set(explanation_metrics(["a b"])) == {"usr"}
    with pytest.raises(ValueError, match="need the feature vocabulary"):
        explanation_metrics(["a b"], reference_features=["a"])


# -- faithfulness ---------------------------------------------------------------------------------


def _item(item_id, title, brand=None, categories=(), price=None):
    fields = {"brand": brand, "categories": list(categories), "price": price}
    return Item(item_id, title, {k: v for k, v in fields.items() if v not in (None, [])})


OPI = _item("A", "OPI Nail Lacquer Big Apple Red", "OPI", ["Beauty", "Makeup", "Nails", "Nail Polish"], 9.0)
ESSIE = _item("B", "Essie Gel Couture Top Coat", "Essie", ["Beauty", "Makeup", "Nails", "Top Coats"], 11.0)
MASCARA = _item(
    "C", "Maybelline Great Lash Mascara", "Maybelline", ["Beauty", "Makeup", "Eyes", "Mascara"], 5.0
)
OIL = _item("D", "Cococare Coconut Oil", "Cococare", ["Beauty", "Skin Care", "Oils"], 30.0)
BARE = _item("E", "Mystery Gift Box")  # no brand, categories or price
STOPWORD_BRAND = _item("F", "Some Thing", "The", ["Beauty"])
CATALOG = Catalog([OPI, ESSIE, MASCARA, OIL, BARE, STOPWORD_BRAND])
BANDS = PriceBands((8.0, 20.0))  # OPI, Essie mid-range; Maybelline budget; Cococare premium


@pytest.fixture(scope="module")
def vocab():
    return AttributeVocabulary.from_catalog(CATALOG, BANDS)


def test_vocabulary_from_catalog(vocab):
    assert vocab.phrases["opi"] == {Attribute("brand", "opi")}
    assert vocab.phrases["nail polish"] == {Attribute("category", "nail polish")}
    assert vocab.phrases["essie gel couture top coat"] == {Attribute("item", "B")}
    assert vocab.phrases["mid range"] == {Attribute("price", "mid range")}
    assert "the" not in vocab.phrases  # a stopword brand would match every sentence
    assert vocab.attributes_of(BARE) == {Attribute("item", "E")}
    assert vocab.item_features(OPI) == {"opi", "beauty", "makeup", "nails", "nail polish"}
    assert "top coats" in vocab.feature_phrases() and "mid range" not in vocab.feature_phrases()


def test_delexicalized_usr_counts_phrasings_not_facts(vocab):
    from genrec.eval.explain import delexicalized_usr

    text = "Essie Gel Couture Top Coat is a mid-range pick from Essie, like your OPI nail polish."
    assert vocab.delexicalize(text) == "<item> is a <price> pick from <brand> like your <brand> <category>"
    template = [
        f"{t} is from {b}."
        for t, b in [("OPI Nail Lacquer Big Apple Red", "OPI"), ("Cococare Coconut Oil", "Cococare")]
    ]
    assert unique_sentence_ratio(template) == 1.0 and delexicalized_usr(template, vocab) == 0.5
    free = [*template[:1], "You will love OPI."]
    assert delexicalized_usr(free, vocab) == 1.0
    assert explanation_metrics(template, vocabulary=vocab)["usr_delex"] == 0.5


def test_vocabulary_price_bands_default_to_catalog_terciles():
    assert AttributeVocabulary.from_catalog(CATALOG).price_bands == PriceBands.from_prices([9, 11, 5, 30])
    assert AttributeVocabulary.from_catalog(Catalog([BARE])).price_bands is None


def test_faithful_explanation_names_item_and_history_attributes(vocab):
    text = "Essie Gel Couture Top Coat is a mid-range pick from Essie, like your OPI nail polish."
    result = check_explanation(text, ESSIE, [OPI], vocab)
    sources = {m.phrase: m.source for m in result.mentions}
    assert sources == {
        "essie gel couture top coat": "item",
        "mid range": "item",
        "essie": "item",
        "opi": "history",
        "nail polish": "history",
    }
    assert [m.phrase for m in result.history_mentions] == ["opi", "nail polish"]
    assert len(result.item_mentions) == 3 and result.unsupported == ()
    assert result.faithful and not result.hallucinated


def test_hallucinated_brand_and_category(vocab):
    result = check_explanation("From Maybelline, a mascara you will love.", ESSIE, [OPI], vocab)
    assert [m.phrase for m in result.unsupported] == ["maybelline", "mascara"]
    assert not result.faithful and result.hallucinated


def test_a_named_title_is_one_mention_of_that_item(vocab):
    result = check_explanation("Better than Maybelline Great Lash Mascara!", ESSIE, [OPI], vocab)
    assert [(m.phrase, m.attributes) for m in result.mentions] == [
        ("maybelline great lash mascara", frozenset({Attribute("item", "C")}))
    ]
    assert result.hallucinated
    assert check_explanation("Better than Maybelline Great Lash Mascara!", ESSIE, [MASCARA], vocab).faithful


def test_wrong_price_band_is_unfaithful_but_not_a_hallucination(vocab):
    result = check_explanation("A premium nail polish.", ESSIE, [OPI], vocab)
    assert [m.phrase for m in result.unsupported] == ["premium"]
    assert not result.faithful and not result.hallucinated


def test_matching_is_case_insensitive_and_whole_word(vocab):
    assert check_explanation("OPI and opi and Opi", ESSIE, [OPI], vocab).faithful
    assert check_explanation("A topical cream for oily nailss.", ESSIE, [], vocab).mentions == ()


def test_item_without_metadata_supports_only_its_title(vocab):
    assert check_explanation("Mystery Gift Box is a fun surprise.", BARE, [], vocab).faithful
    assert check_explanation("A budget Mystery Gift Box.", BARE, [], vocab).unsupported[0].phrase == "budget"


def test_faithfulness_metrics(vocab):
    results = [
        check_explanation("Loved by Essie fans.", ESSIE, [OPI], vocab),  # faithful
        check_explanation("A premium top coat.", ESSIE, [OPI], vocab),  # wrong band only
        check_explanation("Just like Cococare.", ESSIE, [OPI], vocab),  # hallucinated brand
        check_explanation("You will like it.", ESSIE, [OPI], vocab),  # names nothing: faithful
    ]
    assert faithfulness_metrics(results) == {"faithfulness": 0.5, "hallucination_rate": 0.25}
    metrics = explanation_metrics(["a", "b", "c", "d"], faithfulness=results)
    assert metrics["faithfulness"] == 0.5
    with pytest.raises(ValueError, match="4 explanations but 1 faithfulness results"):
        explanation_metrics(["a", "b", "c", "d"], faithfulness=results[:1])


def test_a_quotation_copying_the_start_of_a_shown_title_names_that_item(vocab):
    """Cut where a title reads naturally, a verbatim quotation names its item, even when its words spell
    another brand or category; the same words unquoted, or the quotation of an unshown item, do not."""
    oil = _item("G", "Cococare Coconut Oil Mascara Remover, 4 Ounce", "Cococare", ["Beauty", "Oils"], 9.0)
    catalog = Catalog([*CATALOG, oil])
    vocab = AttributeVocabulary.from_catalog(catalog, BANDS)
    cut = '"Cococare Coconut Oil Mascara Remover" is from Cococare.'
    result = check_explanation(cut, oil, [OPI], vocab)
    assert result.faithful and [(m.phrase, m.source) for m in result.mentions] == [
        ("cococare coconut oil mascara remover", "item"),
        ("cococare", "item"),
    ]
    unquoted = check_explanation("Cococare Coconut Oil Mascara Remover is from Cococare.", oil, [OPI], vocab)
    # another item's title (item D) and a category this one does not have
    assert [m.phrase for m in unquoted.unsupported] == ["cococare coconut oil", "mascara"]
    truncated = '"Cococare Coconut Oil Mascara Rem'  # ran out of tokens inside the quotation
    assert check_explanation(truncated, oil, [OPI], vocab).faithful
    assert check_explanation('You liked "Cococare Coconut Oil Mascara"', ESSIE, [oil], vocab).faithful
    assert check_explanation('"Cococare Coconut Oil Mascara"', ESSIE, [OPI], vocab).hallucinated  # not shown
    wand = _item("H", "Mascara Wand Cleaner Kit", "Wandy", ["Beauty"], 5.0)
    assert check_explanation('"Mascara Wand" for you', wand, [OPI], vocab).faithful
    assert check_explanation('"Mascara" for you', wand, [OPI], vocab).hallucinated  # one word: the category
    respelled = check_explanation('"Cococare Coconut Oils Mascara"', oil, [OPI], vocab)
    assert respelled.hallucinated  # not verbatim: matched word by word
    gold = _item("I", 'Argan Oil, acclaimed as "Mascara Gold" by all', "Wandy", ["Beauty"], 5.0)
    assert check_explanation(f'"{gold.title}" is an oil.', gold, [OPI], vocab).faithful  # its own quotes
