"""Fixed binary layouts compiled into fast encode/decode functions.

A layout lists a message's fields in wire order with a `struct` code, plus the
venue's own kinds: ``u48`` (ITCH timestamps), ``char`` (one ASCII byte as a
1-char str) and ``alphaN`` (ASCII, left-justified, space padded, exposed
without its padding). The msgspec Struct for a message declares exactly these
fields in the same order, so the generated code can build it positionally;
that keeps decode at a few hundred nanoseconds without hand-writing 20 codecs.
An optional tail is the OUCH appendage: ``u16 length`` + that many bytes.
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
    ) -> None:
        self.cls = cls
        self.type_byte = type_byte
        self.fields = fields
        self.appendage = appendage
        fmt = ">c"
        for _name, kind in fields:
            if kind in _INT_CODES:
                fmt += _INT_CODES[kind]
            elif kind == "u48":
                fmt += "HI"
            elif kind == "char":
                fmt += "c"
            elif kind.startswith("alpha"):
                fmt += f"{int(kind[5:])}s"
            else:
                raise ValueError(f"unknown field kind {kind!r}")
        self.struct = struct.Struct(fmt)
        self.fixed_size = self.struct.size
        self.decode: Callable[[bytes | bytearray | memoryview], Any] = self._compile_decode()
        self.encode: Callable[[Any], bytes] = self._compile_encode()

    def _compile_decode(self) -> Callable[[bytes | bytearray | memoryview], Any]:
        names: list[str] = ["_t"]
        args: list[str] = []
        for i, (_name, kind) in enumerate(self.fields):
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
        else:
            src.append(f"    if n != {size}:")
            src.append(f"        raise Err(f'{self.cls.__name__}: {{n}} bytes, expected {size}')")
        src.append(f"    {', '.join(names)}, = unpack_from(buf, 0)")
        src.append(f"    return cls({', '.join(args)})")
        ns: dict[str, Any] = {
            "unpack_from": self.struct.unpack_from,
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
        src = f"def encode(m):\n    return {body}\n"
        ns: dict[str, Any] = {
            "pack": self.struct.pack,
            "pack_u16": struct.Struct(">H").pack,
            "tb": self.type_byte,
        }
        exec(src, ns)
        return ns["encode"]  # type: ignore[no-any-return]


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
