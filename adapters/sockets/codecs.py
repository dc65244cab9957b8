"""How messages become frames: length-prefixed msgpack on TCP, JSON text on WebSocket.

A codec's ``encode`` gives what one ``send`` writes: on TCP the 4-byte
big-endian length and the msgpack payload; on WebSocket one JSON text
message. Both carry the same structs, ``kind`` tag included. JSON has no NaN
or infinity: they travel as strings, listed in a ``$nonfinite`` member, as
in :mod:`eventbus.adapters.files`, and come back as floats.
"""

from __future__ import annotations

import struct
from typing import Any, Protocol

import msgspec

from ..files import NONFINITE, encode_event, restore_nonfinite
from .frames import ClientFrame, ServerFrame

__all__ = ["HEADER", "Codec", "JsonCodec", "MsgpackCodec"]

HEADER = struct.Struct(">I")
"""A TCP frame's length prefix: unsigned, big-endian (network order)."""

Payload = bytes | str


class Codec(Protocol):
    def encode(self, message: msgspec.Struct) -> Any:
        """One whole frame, as one send writes it."""

    def pack(self, frames: list[Any]) -> list[Any]:
        """Frames as few sends write them."""

    def client_frame(self, payload: Any) -> ClientFrame:
        """Raises ``msgspec.DecodeError`` (or ``ValidationError``) for anything but a client frame."""

    def server_frame(self, payload: Any) -> ServerFrame:
        """Raises ``msgspec.DecodeError`` (or ``ValidationError``) for anything but a server frame."""


class MsgpackCodec:
    """TCP: a 4-byte length, then one msgpack map."""

    def __init__(self) -> None:
        self._encode = msgspec.msgpack.Encoder().encode
        self._client = msgspec.msgpack.Decoder(ClientFrame)
        self._server = msgspec.msgpack.Decoder(ServerFrame)

    def encode(self, message: msgspec.Struct) -> bytes:
        payload = self._encode(message)
        return HEADER.pack(len(payload)) + payload

    def pack(self, frames: list[bytes]) -> list[bytes]:
        return [b"".join(frames)]  # one write for the lot

    def client_frame(self, payload: bytes) -> ClientFrame:
        return self._client.decode(payload)

    def server_frame(self, payload: bytes) -> ServerFrame:
        return self._server.decode(payload)


class JsonCodec:
    """WebSocket: one JSON text message per frame."""

    def __init__(self) -> None:
        self._client = msgspec.json.Decoder(ClientFrame)
        self._server = msgspec.json.Decoder(ServerFrame)

    def encode(self, message: msgspec.Struct) -> str:
        return encode_event(message)[:-1].decode()  # type: ignore[arg-type]  # any struct encodes alike

    def pack(self, frames: list[str]) -> list[str]:
        return frames  # one message each

    def client_frame(self, payload: Payload) -> ClientFrame:
        return _decode(payload, self._client, ClientFrame)  # type: ignore[no-any-return]

    def server_frame(self, payload: Payload) -> ServerFrame:
        return _decode(payload, self._server, ServerFrame)  # type: ignore[no-any-return]


def _decode(payload: Payload, decoder: msgspec.json.Decoder[Any], union: Any) -> Any:
    if isinstance(payload, bytes):
        raise msgspec.DecodeError("a binary message: frames are JSON text on a WebSocket")
    if NONFINITE not in payload:
        return decoder.decode(payload)
    return msgspec.convert(restore_nonfinite(msgspec.json.decode(payload)), union)
