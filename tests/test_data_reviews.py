import gzip
import json

import pytest

from genrec.data import Review, explanation_targets, extract_features, read_reviews, split_reviews
from genrec.data.reviews import feature_candidates, select_target, split_sentences
from genrec.data.text import word_tokens
from genrec.errors import DataFormatError


def _review(user, item, text, time=0.0, rating=5.0, summary="tip"):
    return Review(user, item, time, rating, text, summary)


def _write(path, records):
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)
    return path


def test_split_sentences():
    text = "Great tuner! The clip is strong. Does it hold?Yes\nIt does...   really"
    assert split_sentences(text) == [
        "Great tuner!",
        "The clip is strong.",
        "Does it hold?Yes",
        "It does...",
        "really",
    ]


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("the sound quality is great", {"quality", "sound quality"}),
        ("a great little tuner that works", {"tuner"}),  # opinion words are skipped
        ("my strings sound bright", {"sound", "strings sound"}),  # no tagger: at most two content words
        ("the tuner works well", {"tuner"}),  # a frequent verb ends the phrase
        ("this works and it is a really nice product", set()),  # no article before a content word
        ("the 9v battery", set()),  # the phrase starts right after the article, and "9v" is no feature
    ],
)
def test_feature_candidates(sentence, expected):
    assert feature_candidates(word_tokens(sentence)) == expected


TRAIN = [
    _review("u1", "tuner", "The clip is strong. I like the display a lot."),
    _review("u2", "tuner", "Bright display! The clip is tight. Love the display."),
    _review("u3", "strings", "The tone is warm. I hate the clip on my tuner."),
    _review("u4", "strings", "My fingers are fine. Warm tone overall."),
]


def test_extract_features_uses_document_frequency():
    vocab = extract_features(TRAIN, min_df=2, max_df=1.0)
    # Candidates by review: {clip, display}, {clip, display}, {tone, clip, tuner}, {fingers}. "Warm tone"
    # has no article, so "tone" is a candidate of one review only.
    assert vocab.document_frequency == {"clip": 3, "display": 2}
    assert vocab.features == ["clip", "display"]
    assert vocab.item_features == {"tuner": {"clip", "display"}, "strings": {"clip"}}
    assert vocab.user_features["u4"] == frozenset()
    with pytest.raises(ValueError, match="min_df"):
        extract_features(TRAIN, min_df=0)


def test_extract_features_max_df_drops_generic_words():
    features = extract_features(TRAIN, min_df=1, max_df=0.5).document_frequency
    assert "clip" not in features and features["display"] == 2  # in 3 and 2 of the 4 reviews


def test_select_target_prefers_a_feature_of_the_item():
    vocab = extract_features(TRAIN, min_df=2, max_df=1.0)
    review = _review("u9", "strings", "The display on my old tuner was dim. The clip of the pack is tight!")
    target = select_target(review, vocab)
    assert target.sentence == "The clip of the pack is tight!"  # "display" is not a feature of these strings
    assert (target.feature, target.features, target.summary) == ("clip", ("clip",), "tip")
    # Without an item feature, the first sentence naming any feature.
    other = select_target(_review("u9", "new-item", "Nothing here. The display is dim but fine."), vocab)
    assert (other.sentence, other.feature) == ("The display is dim but fine.", "display")


def test_select_target_needs_a_feature_in_a_sentence_of_4_to_30_words():
    vocab = extract_features(TRAIN, min_df=2, max_df=1.0)
    assert select_target(_review("u", "tuner", "Great clip. " + "clip " * 31 + "!"), vocab) is None
    assert select_target(_review("u", "tuner", "It is a fine thing overall."), vocab) is None
    assert select_target(_review("u", "tuner", ""), vocab) is None


def test_explanation_targets_keep_input_order_and_skip_reviews_without_one():
    vocab = extract_features(TRAIN, min_df=2, max_df=1.0)
    reviews = [_review("a", "tuner", "No feature here at all."), *TRAIN[:2]]
    assert [t.user for t in explanation_targets(reviews, vocab)] == ["u1", "u2"]


def test_split_reviews_is_chronological_per_user():
    reviews = [
        _review("u", "i3", "x", time=30),
        _review("u", "i1", "x", time=10),
        _review("u", "i2a", "x", time=20),
        _review("u", "i2b", "x", time=20),  # same day: file order breaks the tie
        _review("short", "i1", "x", time=5),
        _review("short", "i2", "x", time=6),
    ]
    split = split_reviews(reviews)
    assert [r.item for r in split.train] == ["i1", "i2a", "i1", "i2"]
    assert [r.item for r in split.valid] == ["i2b"]
    assert [r.item for r in split.test] == ["i3"]


def _record(user, item, **extra):
    record = {"reviewerID": user, "asin": item, "unixReviewTime": 1, "overall": 5.0, "reviewText": "t"}
    return record | extra


def test_read_reviews_keeps_text_summary_rating_time(tmp_path):
    path = _write(
        tmp_path / "r.json.gz", [_record("u", "i", reviewText="A &amp; B", summary="Tip", overall=4)]
    )
    assert read_reviews(path) == [Review("u", "i", 1.0, 4.0, "A & B", "Tip")]


@pytest.mark.parametrize(
    ("records", "match"),
    [
        (
            [_record("u", "i"), _record("v", "i"), _record("u", "i")],
            r"r.json.gz:3: second review of item 'i' by ",
        ),
        ([_record("u", "i", overall=6)], r"r.json.gz:1: rating must be between 1 and 5, got 6"),
        ([_record("u", "i", overall="five")], r"r.json.gz:1: overall must be a number"),
        ([{"reviewerID": "u", "asin": "i"}], r"r.json.gz:1: missing required field\(s\) unixReviewTime"),
    ],
)
def test_read_reviews_errors_name_file_and_line(tmp_path, records, match):
    path = _write(tmp_path / "r.json.gz", records)
    with pytest.raises(DataFormatError, match=match):
        read_reviews(path)


def test_read_reviews_bad_json_names_the_line(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_record("u", "i")) + '\n{"reviewerID": \n')
    with pytest.raises(DataFormatError, match=r"r.json:2: invalid JSON"):
        read_reviews(path)


@pytest.mark.slow
def test_instruments_targets(instruments_dir):
    reviews = read_reviews(instruments_dir / "reviews_Musical_Instruments_5.json.gz")
    split = split_reviews(reviews)
    assert (len(reviews), len(split.valid), len(split.test)) == (10_261, 1_429, 1_429)
    vocab = extract_features(split.train)
    assert {"price", "sound", "strings", "tuner", "sound quality"} <= set(vocab.document_frequency)
    targets = explanation_targets(split.test, vocab)
    assert len(targets) >= 0.9 * len(split.test)
    by_pair = {(r.user, r.item): r for r in split.test}
    for target in targets:
        review = by_pair[(target.user, target.item)]
        assert target.sentence in review.text and target.feature in vocab.document_frequency
        assert target.feature in word_tokens(target.sentence) or " " in target.feature


def test_review_explanations_use_training_pairs_only(tmp_path):
    from genrec.data import dataset_reviews, load_amazon_reviews
    from genrec.prompts import review_explanations
    from genrec.prompts.explanations import training_review_features

    texts = {  # every review names a feature; the last two items of each user are validation and test
        0: "The tuner clip is strong. Nice.",
        1: "I like the display on this tuner.",
        2: "The strings sound warm and bright.",
        3: "The pedal is quiet and the knob is solid.",
    }
    records = [
        {
            "reviewerID": f"u{u}",
            "asin": f"i{(u + t) % 5}",
            "unixReviewTime": 1000 * t,
            "overall": 5.0,
            "reviewText": texts[t] + (" SECRET" if t >= 2 else ""),
            "summary": "ok",
        }
        for u in range(4)
        for t in range(4)
    ]
    path = _write(tmp_path / "reviews_Tiny_5.json.gz", records)
    ds = load_amazon_reviews(path, k_core=1)
    reviews = dataset_reviews(ds)  # read from the dump the dataset came from
    assert len(reviews) == 16
    # features come from the training reviews (texts 0 and 1) only: the pedal and strings reviews are held out
    assert set(training_review_features(ds, reviews, min_df=1).features) == {"clip", "tuner clip", "display"}
    examples = review_explanations(ds, reviews, min_df=1)
    assert [e.explanation for e in examples] == [
        "I like the display on this tuner."
    ] * 4  # each user's one training pair (item 1 after item 0); validation/test reviews never appear
    assert all(e.history.tolist() == [ds.catalog.index_of(f"i{u % 5}")] for u, e in enumerate(examples))
    with pytest.raises(DataFormatError, match="explanation_reviews"):
        dataset_reviews(ds, tmp_path / "missing.json.gz")
