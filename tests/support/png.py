"""A small PNG reader (zlib and the five scanline filters), so tests can look at the pixels
rrdtool drew without an imaging library. Handles what rrdtool writes: 8-bit RGB, RGBA and
palette images, not interlaced."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {2: 3, 6: 4, 3: 1}  # colour type -> bytes per pixel at bit depth 8


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    pixels: list[list[tuple[int, int, int]]]  # rows of (red, green, blue)

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        return self.pixels[y][x]


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(data: bytes, width: int, height: int, size: int) -> list[bytearray]:
    stride = width * size
    rows: list[bytearray] = []
    previous = bytearray(stride)
    at = 0
    for _ in range(height):
        kind = data[at]
        row = bytearray(data[at + 1 : at + 1 + stride])
        at += 1 + stride
        for i in range(stride):
            left = row[i - size] if i >= size else 0
            up = previous[i]
            corner = previous[i - size] if i >= size else 0
            if kind == 1:
                row[i] = (row[i] + left) & 0xFF
            elif kind == 2:
                row[i] = (row[i] + up) & 0xFF
            elif kind == 3:
                row[i] = (row[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                row[i] = (row[i] + _paeth(left, up, corner)) & 0xFF
            elif kind != 0:
                raise ValueError(f"unknown PNG filter {kind}")
        rows.append(row)
        previous = row
    return rows


def read(path: Path) -> Image:
    data = path.read_bytes()
    if not data.startswith(SIGNATURE):
        raise ValueError(f"{path} is not a PNG file")
    at = len(SIGNATURE)
    header: tuple[int, ...] = ()
    palette: list[tuple[int, int, int]] = []
    compressed = bytearray()
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        body = data[at + 8 : at + 8 + length]
        at += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = [tuple(body[i : i + 3]) for i in range(0, len(body), 3)]  # type: ignore[misc]
        elif kind == b"IDAT":
            compressed += body
        elif kind == b"IEND":
            break
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in CHANNELS or interlace:
        raise ValueError(f"{path}: unsupported PNG (depth {depth}, colour type {colour})")
    size = CHANNELS[colour]
    rows = _unfilter(zlib.decompress(bytes(compressed)), width, height, size)
    pixels: list[list[tuple[int, int, int]]] = []
    for row in rows:
        if colour == 3:
            pixels.append([palette[index] for index in row])
        else:
            pixels.append([(row[i], row[i + 1], row[i + 2]) for i in range(0, len(row), size)])
    return Image(width, height, pixels)


def hex_colour(text: str) -> tuple[int, int, int]:
    value = text.lstrip("#")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))
