"""Blocks cut for worker processes parse into exactly the rows the streaming reader gives."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from medledger.gateway.sources import delimited_blocks, parse_block, read_delimited

# pieces that stress record boundaries: quotes, doubled quotes, delimiters and line breaks
# inside quoted fields, stray quotes inside unquoted fields, blank lines, CR-only breaks, NUL
PIECES = ["a", "王", ",", '"', '""', "\r\n", "\n", "\r", " ", "x,y", '"p\r\nq"', "\x00", "1"]


def _both(text: str, size: int, encoding: str = "utf-8") -> tuple[list[object], list[object]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.csv"
        path.write_bytes(text.encode(encoding))
        header, rows = read_delimited(path, encoding, ",")
        whole = list(rows)
        header2, blocks = delimited_blocks(path, encoding, ",", size)
        assert header2 == header
        cut = []
        for start, lines in blocks:
            cut += parse_block(lines, start, header, encoding, ",")
        return whole, cut


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=60), st.integers(1, 5))
def test_blocks_equal_the_stream(pieces: list[str], size: int) -> None:
    whole, cut = _both("id,code\r\n" + "".join(pieces), size)
    assert cut == whole


def test_quoted_field_spanning_a_block_end_stays_one_row() -> None:
    text = 'id,term\r\n1,a\r\n2,"b\r\nc\r\nd"\r\n\r\n3,e\r\n4,"f"\r\n'
    for size in (1, 2, 3, 10):
        whole, cut = _both(text, size)
        assert cut == whole
        assert [r.position for r in cut] == ["1", "2", "3", "4"]
        assert cut[1].values["term"] == "b\r\nc\r\nd"       # type: ignore[attr-defined]


def test_gbk_blocks_keep_verbatim_bytes() -> None:
    text = "编号,诊断\r\n1,高血压\r\n2,\"冠心病,\r\n稳定型\"\r\n3\r\n"
    whole, cut = _both(text, 1, "gbk")
    assert cut == whole and len(cut) == 3
    assert cut[1].raw == "2,\"冠心病,\r\n稳定型\"\r\n".encode("gbk")     # type: ignore[attr-defined]
