import gzip

import pytest

from genrec.data import load_amazon_p5
from genrec.data.readers import iter_lines
from genrec.errors import DataFormatError


def test_bad_encoding_names_the_line(tmp_path):
    path = tmp_path / "sequential_data.txt"
    path.write_bytes(b"1 1 2 3\n\n2 1 2 3 \xff\n")
    with pytest.raises(DataFormatError, match=r"sequential_data.txt:3: not valid utf-8"):
        load_amazon_p5(tmp_path)


def test_gzip_detected_by_content_and_truncation_reported(tmp_path):
    data = gzip.compress(b"a\n\nb\r\n")
    path = tmp_path / "plain-name.txt"  # no .gz suffix
    path.write_bytes(data)
    assert list(iter_lines(path)) == [(1, "a"), (3, "b")]
    truncated = tmp_path / "t.gz"
    truncated.write_bytes(gzip.compress(b"x\n" * 5000)[:-20])
    with pytest.raises(DataFormatError, match=r"t.gz: corrupt or truncated"):
        list(iter_lines(truncated))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        list(iter_lines(tmp_path / "absent.txt"))
