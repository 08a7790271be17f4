import pytest

from genrec.data.text import clean_text, unescape_html


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
