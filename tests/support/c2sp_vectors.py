"""Published tlog-cosignature data: a real checkpoint cosigned by four public witnesses.

A checkpoint of the arche2025h1 staging CT log, cosigned by four witnesses of the witness
network (data as published in florolf/tlog-scales tests/test_signing.py). The witness verifier
keys are the operators' published ones (remora's also appears in transparency-dev/formats
note/note_cosigv1_test.go; the others on transparency.dev/witnesses and the witness-network
operators' about pages). Ed25519 verification of four independent signers' lines pins the signed
message byte for byte: "cosignature/v1\ntime <t>\n" + the body.
"""

from __future__ import annotations

from medledger.ledger.cosignature import parse_cosigner_vkey

ARCHE_BODY = (
    b"arche2025h1.staging.ct.transparency.dev\n1432088532\n"
    b"U7WM79jrzyhGZ5/GUBTpM7NzwdyfFx61t3RovgcC4Ro=\n"
)
ARCHE_LOG_VKEY = (
    "arche2025h1.staging.ct.transparency.dev+ba2f06c0+AU0vHmlGCS/PdN8b2OaGmKprLI8HKM+dJ472xgFYh15f"
)
ARCHE_LINES = [
    # RFC 6962 (type 0x05, ECDSA) and Ed25519 (0x01) signatures by the log itself
    "— arche2025h1.staging.ct.transparency.dev zTM8sQAAAZ5W0WdjBAMARjBEAiBjW5IQf9pvsYLfQFX6hoGRE"
    "PMHbdQ3urbllzalApkptQIgIpwtEroeW2BXaHAI4kJXFbon5Ch9MNL5zRNZ55lvGt0=",
    "— arche2025h1.staging.ct.transparency.dev ui8GwCF1+kWqZrxGdhj4aX3gcw7XUlXQQabg/27lefwhUkzbC3"
    "NygNI75MdhL1bfTW9g8Ei59RA23oHP7Ry1k3ZFWwQ=",
    "— transparency.dev/DEV:witness-little-garden 2AQqhwAAAABqEiEgzgFIqqhbUoDwjMWE6UP8nd8/KYTzwZ2r"
    "hIgcqoXHAwVkjZr4AscylP3v7sEodkRAErumC2q44vdgJY096st5BQ==",
    "— witness1.smartit.nu/witness1 pIyCDwAAAABqEiEghIp82KWebrw7/oHQwlTAm3g2RKS4+eebl8eO0WH+/iEcx"
    "Z75W3u5hNI7TOQtmJbqmNWVuE0tgh0XwzdZsDsUAQ==",
    "— remora.n621.de 2net5wAAAABqEiEgPlfF3V06o0Y+fHM+J5J9s27wgxxcOVSpZ/2g/KSiXCg9DEZI+aVCIobWX9sX"
    "Tynk5XeU/zZ0WBxtqB0DrAWfBw==",
    "— witness.stagemole.eu Z/euoAAAAABqEiEgw0i+7g2ENfDAWHmtRzCfKTHSDwYDJA2NmKeGi9Y8FtEyOUvVr+AJmIY"
    "/2TUFucgKi7lI7cUiOvKFYe/TmN9DAg==",
]
ARCHE_NOTE = ARCHE_BODY + b"\n" + "".join(ln + "\n" for ln in ARCHE_LINES).encode()
WITNESS_VKEYS = [
    "transparency.dev/DEV:witness-little-garden+d8042a87+BCtusOxINQNUTN5Oj8HObRkh2yHf/MwYaGX4CPdiVEPM",
    "witness1.smartit.nu/witness1+a48c820f+BPSFWg9G6KPiO7QPryYO5Xq4oYJJ+kAvLKLSimDhoxMO",
    "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
    "witness.stagemole.eu+67f7aea0+BEqSG3yu9YrmcM3BHvQYTxwFj3uSWakQepafafpUqklv",
]
WITNESSES = dict(parse_cosigner_vkey(v) for v in WITNESS_VKEYS)
ARCHE_TIME = 1779573024
