import pytest

from genrec.data.text import PhraseMatcher, clean_text, normalize_phrase, unescape_html, word_tokens


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ("&amp;quot;quoted&amp;quot;", '"quoted"'),  # escaped twice
        ("&amp;amp;#34;", '"'),  # escaped three times
        ("caf&eacute; &#8211; bar", "café – bar"),
        ("plain", "plain"),
    ],
)
def test_unescape_html_until_stable(raw, expected):
    assert unescape_html(raw) == expected


def test_clean_text_collapses_whitespace_and_strips():
    assert clean_text("  Nail\tPolish \n\n 0.5&nbsp;oz  ") == "Nail Polish 0.5 oz"


def test_clean_text_none_and_non_strings():
    assert clean_text(None) == ""
    assert clean_text(12.5) == "12.5"


def test_word_tokens_lowercase_and_keep_apostrophes():
    assert word_tokens("L'Oreal’s TOP-coat, 0.5 oz!") == ["l'oreal's", "top", "coat", "0", "5", "oz"]
    assert normalize_phrase("  Tools & Accessories ") == "tools accessories"


def test_phrase_matcher_whole_words_longest_first():
    matcher = PhraseMatcher(["OPI", "Nail Polish", "OPI Nail Lacquer", "nail", "Top Coats"])
    assert len(matcher) == 5
    text = "OPI nail lacquer beats any nail polish; OPI, not OPIs or topical top coats."
    assert matcher.find(text) == ["opi nail lacquer", "nail polish", "opi", "top coats"]
    assert matcher.find(["my", "nail", "polish"]) == ["nail polish"]  # tokens work as well as text
    assert PhraseMatcher(["", "!!"]).find("!!") == []  # phrases with no words are ignored
