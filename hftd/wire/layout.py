"""Fixed binary layouts compiled into fast encode/decode functions.

A layout lists a message's fields in wire order with a `struct` code, plus the
venue's own kinds: ``u48`` (ITCH timestamps), ``char`` (one ASCII byte as a
1-char str) and ``alphaN`` (ASCII, left-justified, space padded, exposed
without its padding). The msgspec Struct for a message declares exactly these
fields in the same order, so the generated code can build it positionally;
that keeps decode at a few hundred nanoseconds without hand-writing 20 codecs.
An optional tail is the OUCH appendage: ``u16 length`` + that many bytes.
`short_ok` accepts a message without its last field (the Struct's default for
it then): for a field one rendering of a spec has and another has not.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from hftd.wire.errors import RemoteProtocolError

_INT_CODES = {"u8": "B", "u16": "H", "u32": "I", "u64": "Q", "i64": "q", "i32": "i"}


class Layout:
    """One message type's wire layout (the type byte included)."""

    def __init__(
        self,
        cls: type[Any],
        type_byte: bytes,
        fields: list[tuple[str, str]],
        *,
        appendage: bool = False,
        short_ok: bool = False,
    ) -> None:
        if short_ok and (appendage or not fields or fields[-1][1] == "u48"):
            raise ValueError("short_ok: a last field of one value, and no appendage")
        self.cls = cls
        self.type_byte = type_byte
        self.fields = fields
        self.appendage = appendage
        self.short_ok = short_ok
        self.struct = struct.Struct(">c" + "".join(_code(kind) for _name, kind in fields))
        self.fixed_size = self.struct.size
        # without the last field (short_ok): its own struct, and the size that selects it
        self.short = struct.Struct(">c" + "".join(_code(kind) for _name, kind in fields[:-1]))
        self.decode: Callable[[bytes | bytearray | memoryview], Any] = self._compile_decode()
        self.encode: Callable[[Any], bytes] = self._compile_encode()

    def _compile_decode(self) -> Callable[[bytes | bytearray | memoryview], Any]:
        names: list[str] = ["_t"]
        args: list[str] = []
        short: tuple[int, int] = (0, 0)  # (len(names), len(args)) without the last field
        for i, (_name, kind) in enumerate(self.fields):
            short = (len(names), len(args))
            v = f"v{i}"
            if kind == "u48":
                names += [f"{v}h", f"{v}l"]
                args.append(f"({v}h << 32) | {v}l")
            elif kind == "char":
                names.append(v)
                args.append(f"{v}.decode('latin-1')")
            elif kind.startswith("alpha"):
                names.append(v)
                args.append(f"{v}.decode('latin-1').rstrip(' ')")
            else:
                names.append(v)
                args.append(v)
        size = self.fixed_size
        src = ["def decode(buf):"]
        src.append("    n = len(buf)")
        if self.appendage:
            src.append(f"    if n < {size + 2}:")
            src.append(
                f"        raise Err(f'{self.cls.__name__}: {{n}} bytes, need at least {size + 2}')"
            )
            src.append(f"    alen = unpack_u16(buf, {size})[0]")
            src.append(f"    if n != {size + 2} + alen:")
            src.append(
                f"        raise Err(f'{self.cls.__name__}: {{n}} bytes, appendage says "
                f"{{ {size + 2} + alen}}')"
            )
            args.append(f"bytes(buf[{size + 2}:])")
        elif self.short_ok:
            src.append(f"    if n == {self.short.size}:")
            src.append(f"        {', '.join(names[: short[0]])}, = unpack_short(buf, 0)")
            src.append(f"        return cls({', '.join(args[: short[1]])})")
            src.append(f"    if n != {size}:")
            src.append(
                f"        raise Err(f'{self.cls.__name__}: {{n}} bytes, expected {size} "
                f"or {self.short.size}')"
            )
        else:
            src.append(f"    if n != {size}:")
            src.append(f"        raise Err(f'{self.cls.__name__}: {{n}} bytes, expected {size}')")
        src.append(f"    {', '.join(names)}, = unpack_from(buf, 0)")
        src.append(f"    return cls({', '.join(args)})")
        ns: dict[str, Any] = {
            "unpack_from": self.struct.unpack_from,
            "unpack_short": self.short.unpack_from,
            "unpack_u16": struct.Struct(">H").unpack_from,
            "cls": self.cls,
            "Err": RemoteProtocolError,
        }
        exec("\n".join(src), ns)
        return ns["decode"]  # type: ignore[no-any-return]

    def _compile_encode(self) -> Callable[[Any], bytes]:
        vals: list[str] = ["tb"]
        for name, kind in self.fields:
            if kind == "u48":
                vals += [f"(m.{name} >> 32) & 0xFFFF", f"m.{name} & 0xFFFFFFFF"]
            elif kind == "char":
                vals.append(f"m.{name}.encode('latin-1')")
            elif kind.startswith("alpha"):
                width = int(kind[5:])
                vals.append(f"m.{name}.encode('latin-1').ljust({width}, b' ')")
            else:
                vals.append(f"m.{name}")
        body = f"pack({', '.join(vals)})"
        if self.appendage:
            body += " + pack_u16(len(m.appendage)) + m.appendage"
        src = "def encode(m):\n"
        if self.short_ok:  # the last field at its default (empty) is left out
            last = self.fields[-1][0]
            src += f"    if not m.{last}:\n        return pack_short({', '.join(vals[:-1])})\n"
        src += f"    return {body}\n"
        ns: dict[str, Any] = {
            "pack": self.struct.pack,
            "pack_short": self.short.pack,
            "pack_u16": struct.Struct(">H").pack,
            "tb": self.type_byte,
        }
        exec(src, ns)
        return ns["encode"]  # type: ignore[no-any-return]


def _code(kind: str) -> str:
    """The `struct` format of one field kind."""
    if kind in _INT_CODES:
        return _INT_CODES[kind]
    if kind == "u48":
        return "HI"
    if kind == "char":
        return "c"
    if kind.startswith("alpha"):
        return f"{int(kind[5:])}s"
    raise ValueError(f"unknown field kind {kind!r}")


class Codec:
    """Decode/encode a family of messages keyed by their first byte."""

    def __init__(self, name: str, layouts: list[Layout]) -> None:
        self.name = name
        self.by_type: dict[int, Layout] = {lay.type_byte[0]: lay for lay in layouts}
        self.by_cls: dict[type[Any], Layout] = {lay.cls: lay for lay in layouts}

    def decode(self, buf: bytes | bytearray | memoryview) -> Any:
        """Decode one message; RemoteProtocolError on unknown type or bad size."""
        if not buf:
            raise RemoteProtocolError(f"{self.name}: empty message")
        layout = self.by_type.get(buf[0])
        if layout is None:
            raise RemoteProtocolError(f"{self.name}: unknown message type {bytes(buf[:1])!r}")
        try:
            return layout.decode(buf)
        except (UnicodeDecodeError, struct.error) as exc:
            raise RemoteProtocolError(f"{self.name}: {layout.cls.__name__}: {exc}") from exc

    def encode(self, msg: Any) -> bytes:
        """Encode one message (LocalProtocolError-worthy bugs surface as struct.error)."""
        return self.by_cls[type(msg)].encode(msg)
