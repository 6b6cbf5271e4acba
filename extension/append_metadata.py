"""Appends DuckDB's extension metadata footer to a shared object, making it a loadable
`.duckdb_extension` file.

Layout (DuckDB's loader reads the last 512 bytes): a WebAssembly custom-section header naming
`duckdb_signature` (for tools that expect it; the native loader ignores it), then eight 32-byte
NUL-padded fields stored last-to-first — magic "4", platform, DuckDB version, extension
version, ABI type, three unused — and a 256-byte signature area (zeros: unsigned).
"""

import sys


def leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def footer(platform: str, duckdb_version: str, extension_version: str, abi: str = "CPP") -> bytes:
    def field(text: str) -> bytes:
        raw = text.encode()
        if len(raw) > 32:
            raise ValueError(f"metadata field too long: {text!r}")
        return raw.ljust(32, b"\0")

    fields = [field("4"), field(platform), field(duckdb_version), field(extension_version), field(abi)]
    fields += [field("")] * 3
    metadata = b"".join(reversed(fields))
    name = b"duckdb_signature"
    payload = metadata + b"\0" * 256
    section = bytes([len(name)]) + name + leb128(len(payload)) + payload
    return b"\0" + leb128(len(section)) + section


def main():
    if len(sys.argv) != 6:
        sys.exit("usage: append_metadata.py <in.so> <out.duckdb_extension> <platform> <duckdb version> <extension version>")
    src, dst, platform, duckdb_version, extension_version = sys.argv[1:]
    with open(src, "rb") as f:
        body = f.read()
    with open(dst + ".tmp", "wb") as f:
        f.write(body + footer(platform, duckdb_version, extension_version))
    import os

    os.replace(dst + ".tmp", dst)


if __name__ == "__main__":
    main()
