"""Identifiers (measurement, tag and field names) for InfluxQL and DuckDB SQL: validated, then quoted.

Names come from configuration and from users of the dashboard; they are never pasted into a query.
"""

from __future__ import annotations


class InvalidIdentifier(ValueError):
    pass


def validate(name: object, what: str = "identifier") -> str:
    """A non-empty string without control characters line protocol and the stores cannot carry."""
    if not isinstance(name, str):
        raise InvalidIdentifier(f"{what} must be a string, got {type(name).__name__}")
    if not name:
        raise InvalidIdentifier(f"empty {what}")
    if any(c in name for c in "\n\r\x00"):
        raise InvalidIdentifier(f"{what} {name!r} contains a newline or NUL")
    return name


def influxql(name: str, what: str = "identifier") -> str:
    """InfluxQL double-quoted identifier: backslash and double quote escaped with a backslash."""
    validate(name, what)
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def influxql_string(value: str) -> str:
    """InfluxQL single-quoted string literal holding value exactly: InfluxQL's scanner reads a backslash
    escape for backslash, quote and newline (n), and refuses a raw newline, so those three are escaped."""
    if not isinstance(value, str):
        raise InvalidIdentifier(f"string literal must be a str, got {type(value).__name__}")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def duckdb(name: str, what: str = "identifier") -> str:
    """DuckDB (SQL standard) double-quoted identifier: double quotes doubled."""
    validate(name, what)
    return '"' + name.replace('"', '""') + '"'
