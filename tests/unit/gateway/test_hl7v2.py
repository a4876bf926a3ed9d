"""HL7 v2 reading details: escapes, message splitting, ACK building."""

from __future__ import annotations

from medledger.gateway.hl7v2 import _comp, split_messages, unescape
from medledger.gateway.mllp import ack


def test_delimiter_escapes_are_undone_in_components() -> None:
    assert unescape(r"10\S\3/uL") == "10^3/uL"
    assert unescape(r"a\F\b\T\c\R\d\E\e") == "a|b&c~d\\e"
    assert unescape(r"\H\bold\N\ ") == r"\H\bold\N\ "          # formatting escapes kept
    assert _comp(r"2345-7^Glucose\T\sugar^LN", 2) == "Glucose&sugar"
    assert _comp("a~b^c", 2, rep=1) == "c" and _comp("a", 3) == "" and _comp("a", 1, 5) == ""


def test_messages_split_at_msh_whatever_the_line_ends() -> None:
    text = "MSH|^~\\&|A\rPID|1\r\nMSH|^~\\&|B\nOBX|1\n\n"
    msgs = split_messages(text)
    assert [len(m) for m in msgs] == [2, 2] and msgs[1][0].endswith("|B")


def test_ack_echoes_control_id_and_swaps_applications() -> None:
    msg = b"MSH|^~\\&|SEND|FAC1|RECV|FAC2|20240101||ORU^R01^ORU_R01|CTRL42|P|2.5.1\rPID|1\r"
    a = ack(msg, "AA").decode().split("\r")
    msh = a[0].split("|")
    assert msh[2:6] == ["RECV", "FAC2", "SEND", "FAC1"] and msh[8] == "ACK^R01^ACK"
    assert a[1] == "MSA|AA|CTRL42"
