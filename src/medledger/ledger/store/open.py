"""Open a store from one location string: a PostgreSQL URI or a SQLite file path."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from medledger.errors import Code
from medledger.ledger.store.base import Store, StoreError
from medledger.ledger.store.postgres import PostgresStore
from medledger.ledger.store.sqlite import SQLiteStore

POSTGRES_SCHEMES = ("postgresql", "postgres")


def postgres_location(location: str) -> tuple[str, str | None] | None:
    """(libpq URI, schema) for a ``postgresql://`` or ``postgres://`` location, else None.

    The schema is taken from a ``schema=NAME`` query parameter or a ``#NAME`` fragment (not
    both) and removed from the URI, whose other parameters are kept as written.
    """
    parts = urlsplit(location)
    if parts.scheme not in POSTGRES_SCHEMES:
        return None
    kept, schemas = [], []
    for param in parts.query.split("&") if parts.query else []:
        name, _, value = param.partition("=")
        if unquote(name) == "schema":
            schemas.append(unquote(value.replace("+", " ")))
        else:
            kept.append(param)
    if parts.fragment:
        schemas.append(unquote(parts.fragment))
    if len(schemas) > 1:
        raise StoreError(Code.BAD_ARGS, f"got {len(schemas)} schema names in {location!r}, "
                                        "want at most one (?schema=NAME or #NAME)")
    if schemas and not schemas[0]:
        raise StoreError(Code.BAD_ARGS, f"empty schema name in {location!r}")
    base = location.partition("#")[0].partition("?")[0]  # as written (keeps an empty host)
    uri = f"{base}?{'&'.join(kept)}" if kept else base
    return uri, schemas[0] if schemas else None


def open_store(location: str, *, create: bool = True) -> Store:
    """A ``PostgresStore`` for a ``postgresql://…`` or ``postgres://…`` URI (schema as in
    ``postgres_location``), otherwise a ``SQLiteStore`` on the file ``location``.

    ``create=False``: open a store that exists, for reading or comparing; a location holding
    none (a mistyped path or schema) is refused with ``not_found`` and nothing is created."""
    pg = postgres_location(location)
    if pg is None:
        return SQLiteStore(location, create=create)
    return PostgresStore(*pg, create=create)
