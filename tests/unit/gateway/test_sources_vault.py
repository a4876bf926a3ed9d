"""Strict declared decoding, BOMs, verbatim rows, and the sealed vault."""

from __future__ import annotations

from pathlib import Path

import pytest

from medledger.errors import Code
from medledger.gateway.errors import GatewayError, Reason
from medledger.gateway.sources import BadRow, FileRejected, SourceRow, check_file, read_delimited
from medledger.gateway.vault import Sealer, Vault

GBK_TEXT = "编号,姓名,诊断\r\n1,王伟,高血压\r\n2,李芳,\"冠心病,\r\n稳定型\"\r\n"


def _rows(path: Path, enc: str, delim: str = ",") -> tuple[list[str], list[SourceRow | BadRow]]:
    header, rows = read_delimited(path, enc, delim)
    return header, list(rows)


def test_gbk_declared_and_read_strictly(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_bytes(GBK_TEXT.encode("gbk"))
    check_file(p, "gbk")
    header, rows = _rows(p, "gbk")
    assert header == ["编号", "姓名", "诊断"]
    assert isinstance(rows[1], SourceRow)
    assert rows[1].values["诊断"] == "冠心病,\r\n稳定型"          # quoted multi-line field
    assert rows[1].raw == "2,李芳,\"冠心病,\r\n稳定型\"\r\n".encode("gbk")  # verbatim bytes
    assert [r.position for r in rows] == ["1", "2"]


def test_gbk_file_declared_utf8_is_refused_whole(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_bytes(GBK_TEXT.encode("gbk"))
    with pytest.raises(FileRejected) as exc:
        check_file(p, "utf-8")
    assert exc.value.reason is Reason.ENCODING and "byte" in exc.value.detail


def test_file_cut_inside_a_character_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_bytes("a,b\r\n1,王".encode()[:-1])
    with pytest.raises(FileRejected, match="ends inside"):
        check_file(p, "utf-8")


def test_utf8_bom_is_skipped_and_field_count_checked(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_bytes(b"\xef\xbb\xbfid,code\r\n1,I10\r\n\r\n2\r\n3,E11.9\r\n")
    header, rows = _rows(p, "utf-8")
    assert header == ["id", "code"]
    assert isinstance(rows[1], BadRow) and rows[1].position == "2" and rows[1].raw == b"2\r\n"
    assert isinstance(rows[2], SourceRow) and rows[2].position == "3"


def test_sealer_binds_ciphertext_to_its_row() -> None:
    s = Sealer(b"k" * 32)
    sealed = s.seal(b"body", b"record|r1|1")
    assert b"body" not in sealed and s.open(sealed, b"record|r1|1") == b"body"
    with pytest.raises(GatewayError) as exc:
        s.open(sealed, b"record|r2|1")
    assert exc.value.code is Code.STORE_CORRUPT
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(GatewayError):
        s.open(tampered, b"record|r1|1")
    with pytest.raises(GatewayError, match="want 32"):
        Sealer(b"short")


def test_vault_key_file_is_created_once_and_reused(tmp_path: Path) -> None:
    with Vault(tmp_path / "v") as v:
        sealed = v.sealer.seal(b"x", b"a")
    key = (tmp_path / "v" / "vault.key").read_bytes()
    with Vault(tmp_path / "v") as v:
        assert v.sealer.open(sealed, b"a") == b"x"
    assert (tmp_path / "v" / "vault.key").read_bytes() == key
    other = tmp_path / "other.key"
    other.write_bytes(b"z" * 32)
    with pytest.raises(GatewayError, match="want 0600"):   # readable by others: refused
        Vault(tmp_path / "v", other)
    other.chmod(0o600)
    with Vault(tmp_path / "v", other) as v, pytest.raises(GatewayError):
        v.sealer.open(sealed, b"a")


def test_csv_errors_become_bad_rows(tmp_path: Path) -> None:
    import csv

    p = tmp_path / "a.csv"
    big = "x" * (csv.field_size_limit() + 10)
    p.write_bytes(f"id,v\r\n1,a\r\n2,{big}\r\n3,c\r\n".encode())
    _, rows = _rows(p, "utf-8")
    assert [type(r).__name__ for r in rows] == ["SourceRow", "BadRow", "SourceRow"]
    assert isinstance(rows[1], BadRow) and "field" in rows[1].detail


def test_unreadable_workbook_is_refused(tmp_path: Path) -> None:
    from medledger.gateway.sources import read_xlsx

    p = tmp_path / "a.xlsx"
    p.write_bytes(b"not a zip")
    with pytest.raises(FileRejected) as exc:
        read_xlsx(p)
    assert exc.value.reason is Reason.PARSE
