"""OpenDuck for Python: a DuckDB connection with an OpenDuck database attached.

    import openduck
    con = openduck.connect("mydb")            # or "od:mydb", "openduck:mydb?endpoint=…&token=…"
    con.sql("SELECT * FROM cloud.users WHERE id > 10").show()

The endpoint and token come from the connection string, else from OPENDUCK_ENDPOINT and
OPENDUCK_TOKEN. The extension is found through OPENDUCK_EXTENSION_PATH, else in the build
output ($OPENDUCK_EXTENSION_DIR or ~/.cache/openduck/extension/v<DuckDB version>/).
"""

from __future__ import annotations

import os
from typing import Optional

import duckdb

__all__ = ["connect", "extension_path", "ExtensionNotFound"]
__version__ = "0.1.0"


class ExtensionNotFound(RuntimeError):
    """The OpenDuck extension file could not be found."""


def extension_path() -> str:
    """Where the OpenDuck extension for this DuckDB version is."""
    explicit = os.environ.get("OPENDUCK_EXTENSION_PATH")
    if explicit:
        if not os.path.isfile(explicit):
            raise ExtensionNotFound(f"OPENDUCK_EXTENSION_PATH={explicit} does not exist")
        return explicit
    version = "v" + duckdb.__version__
    directory = os.environ.get("OPENDUCK_EXTENSION_DIR") or os.path.join(
        os.path.expanduser("~/.cache/openduck/extension"), version
    )
    path = os.path.join(directory, "openduck.duckdb_extension")
    if not os.path.isfile(path):
        raise ExtensionNotFound(
            f"no OpenDuck extension for DuckDB {version} at {path}: build it with scripts/build-extension.sh "
            "or set OPENDUCK_EXTENSION_PATH"
        )
    return path


def _connection_string(target: str) -> str:
    if target.startswith(("openduck:", "od:")):
        return target
    if ":" in target or "/" in target:
        raise ValueError(f"{target!r} is not a database name or an openduck:/od: connection string")
    return "openduck:" + target


def connect(
    target: str,
    *,
    alias: str = "cloud",
    token: Optional[str] = None,
    database: str = ":memory:",
    config: Optional[dict] = None,
) -> duckdb.DuckDBPyConnection:
    """Returns a DuckDB connection (local `database`, in memory by default) with the extension
    loaded and the OpenDuck database `target` attached as `alias`."""
    settings = {"allow_unsigned_extensions": True}
    settings.update(config or {})
    con = duckdb.connect(database, config=settings)
    try:
        con.execute(f"LOAD '{extension_path()}'")
        options = ""
        if token:
            escaped = token.replace("'", "''")
            options = f" (TOKEN '{escaped}')"
        path = _connection_string(target).replace("'", "''")
        con.execute(f"ATTACH '{path}' AS {_quote(alias)}{options}")
    except BaseException:
        con.close()
        raise
    return con


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
