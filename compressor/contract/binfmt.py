"""Little binary toolkit shared by the ``.dcz`` container and the ROM image.

Both formats are a byte string ending in a CRC32 (zlib's, little endian) of
everything before it. :class:`Reader` bounds-checks every read and raises
:class:`FormatError` naming the file, so a truncated or bit-flipped file can
never index out of range, allocate absurd arrays or loop forever.
"""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np

from .errors import DeepcompError, FormatError

MAX_TEXT = 4096  # bytes of a text field (architecture and layer names)

class Writer:
    """Append-only byte builder with the few encodings the formats use."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def u8(self, v: int) -> None:
        self.buf += struct.pack("<B", v)

    def u16(self, v: int) -> None:
        self.buf += struct.pack("<H", v)

    def u32(self, v: int) -> None:
        self.buf += struct.pack("<I", v)

    def varint(self, v: int) -> None:
        """Unsigned LEB128: small numbers (shapes, counts) cost one byte."""
        if v < 0:
            raise ValueError("varint must be non-negative")
        while True:
            b = v & 0x7F
            v >>= 7
            if v:
                self.buf.append(b | 0x80)
            else:
                self.buf.append(b)
                return

    def text(self, s: str) -> None:
        raw = s.encode("utf-8")
        self.varint(len(raw))
        self.buf += raw

    def raw(self, b: bytes | bytearray) -> None:
        self.buf += b

    def f16(self, a: np.ndarray) -> None:
        self.buf += np.asarray(a, dtype="<f2").tobytes()

    def nibbles(self, a: np.ndarray) -> None:
        """Values 0..15, two per byte, high nibble first (odd count pads with 0)."""
        a = np.asarray(a, dtype=np.uint8)
        if a.size and a.max() > 15:
            raise ValueError("nibble out of range")
        if a.size % 2:
            a = np.append(a, np.uint8(0))
        self.buf += ((a[0::2] << 4) | a[1::2]).astype(np.uint8).tobytes()

    def with_crc(self) -> bytes:
        """The finished file: contents followed by CRC32 of the contents."""
        return bytes(self.buf) + struct.pack("<I", zlib.crc32(self.buf))


class Reader:
    """Bounds-checked reader; every failure names ``path``."""

    def __init__(self, data: bytes, path: str | Path, *, check_crc: bool = True) -> None:
        self.path = str(path)
        if check_crc:
            if len(data) < 4:
                self.fail("truncated (shorter than its CRC32)")
            body, stored = data[:-4], struct.unpack("<I", data[-4:])[0]
            if zlib.crc32(body) != stored:
                self.fail("CRC32 mismatch (file is corrupt or truncated)")
            data = body
        self.data = memoryview(data)
        self.pos = 0

    def fail(self, what: str) -> None:
        raise FormatError(f"{self.path}: {what}")

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            self.fail(f"truncated (needed {n} bytes at offset {self.pos})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def varint(self, limit: int = 1 << 40) -> int:
        v = shift = 0
        while True:
            b = self.u8()
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 63:
                self.fail("malformed varint")
        if v > limit:
            self.fail(f"value {v} out of range (limit {limit})")
        return v

    def text(self, limit: int = MAX_TEXT) -> str:
        n = self.varint(limit)
        try:
            s = bytes(self.take(n)).decode("utf-8")
        except UnicodeDecodeError:
            self.fail("malformed text field")
            raise  # unreachable
        if not s.isprintable():  # names end up in one-line messages
            self.fail("malformed text field (control character or line break)")
        return s

    def f16(self, n: int) -> np.ndarray:
        return np.frombuffer(self.take(2 * n), dtype="<f2").astype(np.float32)

    def nibbles(self, n: int) -> np.ndarray:
        b = np.frombuffer(self.take((n + 1) // 2), dtype=np.uint8)
        out = np.empty(b.size * 2, dtype=np.uint8)
        out[0::2] = b >> 4
        out[1::2] = b & 15
        return out[:n]

    def expect_end(self) -> None:
        if self.pos != len(self.data):
            self.fail(f"{len(self.data) - self.pos} unexpected trailing bytes")


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file + rename: never a half-written output."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise DeepcompError(f"{path}: cannot write ({e.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, path)
    except OSError as e:  # a full disk, a directory in the way, a read-only target
        Path(tmp).unlink(missing_ok=True)
        raise DeepcompError(f"{path}: cannot write ({e.strerror})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_many(directory: str | Path, files: dict[str, bytes]) -> list[Path]:
    """Write several files into ``directory`` all or nothing as far as a crash goes.

    Every temporary file is written (and any failure, a full disk say, removes
    them all) before the first rename, so an interrupted run leaves either the
    old outputs or the new ones, plus at most the renames of one instant.
    """
    directory = Path(directory)
    done: list[tuple[str, Path]] = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
            done.append((tmp, directory / name))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
    except OSError as e:
        for tmp, _ in done:
            Path(tmp).unlink(missing_ok=True)
        raise DeepcompError(f"{directory}: cannot write ({e.strerror})") from None
    except BaseException:
        for tmp, _ in done:
            Path(tmp).unlink(missing_ok=True)
        raise
    umask = os.umask(0)
    os.umask(umask)
    for tmp, final in done:
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, final)
    return [final for _, final in done]


def read_file(path: str | Path) -> bytes:
    """Read a whole input file, turning OS errors into one-line messages."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DeepcompError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DeepcompError(f"{path}: is a directory, expected a file") from None
    except OSError as e:
        raise DeepcompError(f"{path}: cannot read ({e.strerror})") from None
