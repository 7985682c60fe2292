"""The spoken lines of three adventure games in Debian main: real actors, no transcripts.

Their makers made each game freely redistributable (debian/copyright), and each ships the talkie
(CD) version, so dualasr.pseudolabel can have Whisper label the lines for training:

| game (package)                            | data file      | format                           | lines | hours |
|-------------------------------------------|----------------|----------------------------------|-------|-------|
| Flight of the Amazon Queen (`flight-of-the-amazon-queen`) | queen.1c | MP3 entries in one table | 6,744 | 4.6 |
| Drascula (`drascula`)                     | en/*.ALS       | 8-bit PCM, 11,025 Hz, one file per line | 783 | 0.8 |
| Beneath a Steel Sky (`beneath-a-steel-sky`) | sky.dsk + sky.dnr | 8-bit PCM, 11,025 Hz, RNC-packed | 3,650 | 1.6 packed |

Each reader yields (name, speaker, payload) in a fixed shuffle of the names (so the first N lines
spread over the whole game); the game's `decode` turns a payload into 16 kHz float samples. Speaker
keys are approximate (by character or room, not by actor): they are bookkeeping, never a split.
"""

from __future__ import annotations

import re
import struct
import subprocess
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dualasr.audio import SAMPLE_RATE, prepare_samples

__all__ = ["Game", "GAMES", "read_queen_speech", "read_drascula_speech", "read_bass_speech", "rnc_unpack"]

SCUMMVM_DATA = Path("/usr/share/scummvm")
GAME_RATE = 11025  # Drascula's and Beneath a Steel Sky's speech


def _missing(path: Path, package: str) -> FileNotFoundError:
    return FileNotFoundError(f"{path} not found; install Debian's {package} "
                             f"(`apt-get install {package}`, or run scripts/setup.sh)")


def _shuffled(entries: list[tuple[str, str, bytes]]) -> Iterator[tuple[str, str, bytes]]:
    yield from sorted(entries, key=lambda e: zlib.crc32(e[0].encode()))


def _pcm_u8(name: str, payload: bytes) -> np.ndarray:
    if not payload:
        raise ValueError(f"{name}: empty speech entry; reinstall the game's package")
    return prepare_samples(np.frombuffer(payload, dtype=np.uint8), GAME_RATE, SAMPLE_RATE, name=name)


# ---------------------------------------------------------------------------------------
# Flight of the Amazon Queen


def read_queen_speech(path: Path) -> Iterator[tuple[str, str, bytes]]:
    """Yield (name, speaker, mp3 bytes) for each spoken line of the game's compressed data file.

    queen.1c is ScummVM's rebuilt resource file: "QTBL", a 6-byte version, 2 bytes, a compression
    byte (1: MP3), then a big-endian uint16 entry count and entries of a 12-byte name, a bundle byte
    and big-endian uint32 offset and size. Speech entries end in ".SB", named by room and line and
    ending in a speaker letter and number: "J" is Joe, the hero, "P1" the room's first person.
    Other names (cutscenes) give their letters as the speaker.
    """
    if not path.is_file():
        raise _missing(path, "flight-of-the-amazon-queen")
    data = path.read_bytes()
    if len(data) < 15 or data[:4] != b"QTBL" or data[12] != 1:
        raise ValueError(f"{path}: not the MP3-compressed queen.1c this reader knows (header {data[:13]!r})")
    (count,) = struct.unpack(">H", data[13:15])
    pos, entries = 15, []
    for _ in range(count):
        if pos + 21 > len(data):
            raise ValueError(f"{path}: truncated ({len(data)} bytes, its table lists {count} entries); reinstall the package")
        name = data[pos:pos + 12].split(b"\0")[0].decode("ascii", errors="replace")
        offset, size = struct.unpack(">II", data[pos + 13:pos + 21])
        pos += 21
        if offset + size > len(data):
            raise ValueError(f"{path}: truncated ({name} ends past the file's {len(data)} bytes); reinstall the package")
        if name.endswith(".SB") and not name.startswith("BLANK"):
            stem = name[:-3]
            role = re.match(r"(\d\d)\w*?([A-Z])(\d?)_*\d*$", stem)
            if stem.startswith("JOE") or (role and role[2] == "J"):
                speaker = "joe"  # the hero, one actor throughout
            else:
                speaker = f"room{role[1]}-{role[2]}{role[3]}" if role else stem.rstrip("0123456789_").lower()
            entries.append((stem.lower(), speaker, data[offset:offset + size]))
    yield from _shuffled(entries)


def _decode_mp3(name: str, mp3: bytes) -> np.ndarray:
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", "-f", "s16le", "-ac", "1",
                          "-ar", str(SAMPLE_RATE), "pipe:1"], input=mp3, capture_output=True, check=False)
    if out.returncode != 0:
        raise ValueError(f"{name}: ffmpeg could not decode it ({out.stderr.decode(errors='replace').strip()[:200]}); "
                         "reinstall flight-of-the-amazon-queen")
    return prepare_samples(np.frombuffer(out.stdout, dtype="<i2"), SAMPLE_RATE, SAMPLE_RATE)


# ---------------------------------------------------------------------------------------
# Drascula: The Vampire Strikes Back


def read_drascula_speech(path: Path) -> Iterator[tuple[str, str, bytes]]:
    """Yield (name, speaker, unsigned 8-bit PCM) for each English voice file `<speaker><n>.ALS`.

    A file is a 32-byte header, then 11,025 Hz mono samples (ScummVM's Drascula engine plays it so).
    The letters before the number name the character ("D" Drascula, "VB" Von Braun, "BJ" B.J.);
    a bare number is John Hacker, the hero.
    """
    if not path.is_dir():
        raise _missing(path, "drascula")
    entries = []
    for f in sorted(path.glob("*.ALS")):
        role = re.match(r"([A-Z]*)\d+$", f.stem)
        if role is None:
            continue
        data = f.read_bytes()
        if len(data) <= 32:
            raise ValueError(f"{f}: {len(data)} bytes, shorter than its header; reinstall drascula")
        entries.append((f.stem.lower(), (role[1] or "john").lower(), data[32:]))
    if not entries:
        raise ValueError(f"{path}: no voice files (*.ALS); reinstall drascula")
    yield from _shuffled(entries)


# ---------------------------------------------------------------------------------------
# Beneath a Steel Sky


BASS_SPEECH_FILES = range(50000, 60000)  # file numbers of the voice lines (ScummVM: 50000 + line)
_BASS_HEADER = 22  # each file opens with the engine's 22-byte data header, then RNC-packed PCM


def read_bass_speech(path: Path) -> Iterator[tuple[str, str, bytes]]:
    """Yield (name, speaker, payload) for each voice file in sky.dsk; payload is RNC-packed or raw
    unsigned 8-bit PCM at 11,025 Hz (`decode` unpacks it).

    sky.dnr, beside it, is the directory: a little-endian uint32 count, then 8-byte entries of a
    uint16 file number, a 24-bit offset (bit 23: in units of 16 bytes) and 24-bit flags whose low
    22 bits are the size. The speaker key is the block of 500 lines a file falls in (a rough scene
    key: the files hold no character names).
    """
    directory = path.with_name("sky.dnr")
    for p in (path, directory):
        if not p.is_file():
            raise _missing(p, "beneath-a-steel-sky")
    dnr, dsk = directory.read_bytes(), path.read_bytes()
    (count,) = struct.unpack("<I", dnr[:4]) if len(dnr) >= 4 else (None,)
    if count is None or len(dnr) < 4 + 8 * count:
        raise ValueError(f"{directory}: truncated ({len(dnr)} bytes); reinstall beneath-a-steel-sky")
    entries = []
    for i in range(count):
        entry = dnr[4 + 8 * i:12 + 8 * i]
        (number,) = struct.unpack("<H", entry[:2])
        (offset,) = struct.unpack("<I", entry[2:5] + b"\0")
        (flags,) = struct.unpack("<I", entry[5:8] + b"\0")
        if number not in BASS_SPEECH_FILES:
            continue
        offset = (offset & 0x7FFFFF) << (4 if offset & 0x800000 else 0)
        size = flags & 0x3FFFFF
        if size <= _BASS_HEADER:
            raise ValueError(f"{directory}: file {number} has {size} bytes, too few for its {_BASS_HEADER}-byte "
                             "header; reinstall beneath-a-steel-sky")
        if offset + size > len(dsk):
            raise ValueError(f"{path}: file {number} lies past the data's {len(dsk)} bytes; reinstall beneath-a-steel-sky")
        speaker = f"block{(number - BASS_SPEECH_FILES.start) // 500}"
        entries.append((f"{number}", speaker, dsk[offset + _BASS_HEADER:offset + size]))
    if not entries:
        raise ValueError(f"{directory}: lists no voice files; reinstall beneath-a-steel-sky")
    yield from _shuffled(entries)


def _decode_bass(name: str, payload: bytes) -> np.ndarray:
    return _pcm_u8(name, rnc_unpack(payload, name) if payload[:4] == b"RNC\x01" else payload)


_CRC16_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0xA001 if _c & 1 else _c >> 1
    _CRC16_TABLE.append(_c)


def _crc16(data: bytes) -> int:
    crc = 0
    for b in data:
        crc = _CRC16_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def rnc_unpack(packed: bytes, name: str = "<data>") -> bytes:
    """Unpack Rob Northen's ProPack method 1 (LZ77 with three Huffman tables per chunk).

    Header (big-endian): "RNC", method 1, unpacked size, packed size, unpacked CRC-16, packed
    CRC-16, leeway, chunk count. The body interleaves a bit stream (16-bit little-endian words,
    least significant bit first) with literal bytes, which sit at the position of the next word not
    yet read. The result is checked against the header's size and CRC.
    """
    if len(packed) < 18 or packed[:4] != b"RNC\x01":
        raise ValueError(f"{name}: not RNC method 1 data")
    unpacked_size, packed_size, unpacked_crc, _, _, chunks = struct.unpack(">IIHHBB", packed[4:18])
    if 18 + packed_size > len(packed):
        raise ValueError(f"{name}: RNC data truncated ({len(packed) - 18} of {packed_size} bytes)")
    src = packed[18:18 + packed_size] + b"\0\0\0\0"
    pos = acc = bits = 0  # pos: the next word not in `acc`; acc: the current word's `bits` unread bits

    def peek16() -> int:
        return (acc | ((src[pos] | src[pos + 1] << 8) << bits)) & 0xFFFF

    def take(k: int) -> int:
        nonlocal pos, acc, bits
        if k <= bits:
            value, acc, bits = acc & ((1 << k) - 1), acc >> k, bits - k
            return value
        both = acc | ((src[pos] | src[pos + 1] << 8) << bits)
        pos += 2
        value, acc, bits = both & ((1 << k) - 1), both >> k, bits + 16 - k
        return value

    def read_table() -> list[tuple[int, int, int]]:
        """Canonical codes, shortest first, as (length, code with its bits reversed, symbol)."""
        lengths = [take(4) for _ in range(take(5))]
        table, code = [], 0
        for length in range(1, 17):
            for symbol, n in enumerate(lengths):
                if n == length:
                    table.append((length, int(f"{code >> (16 - length):0{length}b}"[::-1], 2), symbol))
                    code += 1 << (16 - length)
        return table

    def read_value(table: list[tuple[int, int, int]]) -> int:
        window = peek16()
        for length, code, symbol in table:
            if window & ((1 << length) - 1) == code:
                take(length)
                return (1 << (symbol - 1)) | take(symbol - 1) if symbol >= 2 else symbol
        raise ValueError(f"{name}: corrupt RNC data (no code matches)")

    out = bytearray()
    take(2)  # lock and key flags
    for _ in range(chunks):
        literals, distances, lengths = read_table(), read_table(), read_table()
        for remaining in range(take(16), 0, -1):
            n = read_value(literals)
            out += src[pos:pos + n]
            pos += n
            if remaining > 1:
                start = len(out) - read_value(distances) - 1
                length = read_value(lengths) + 2
                if start < 0:
                    raise ValueError(f"{name}: corrupt RNC data (a match before the start)")
                while length > 0:  # a match may overlap what it writes: copy in runs
                    piece = out[start:start + length]
                    out += piece
                    start += len(piece)
                    length -= len(piece)
    if len(out) != unpacked_size or _crc16(bytes(out)) != unpacked_crc:
        raise ValueError(f"{name}: RNC data fails its size or CRC check; reinstall the game's package")
    return bytes(out)


# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Game:
    name: str  # the manifest's source and the output files' prefix
    package: str  # the Debian package
    data: Path  # what `read` opens by default
    read: Callable[[Path], Iterator[tuple[str, str, bytes]]]
    decode: Callable[[str, bytes], np.ndarray]  # (name, payload) -> float32 samples at 16 kHz
    licence: str


GAMES = {g.name: g for g in (
    Game("fotaq", "flight-of-the-amazon-queen", SCUMMVM_DATA / "flight-of-the-amazon-queen/queen.1c",
         read_queen_speech, _decode_mp3, "freely redistributable game data (debian/copyright: Flight-of-the-Amazon-Queen-License)"),
    Game("drascula", "drascula", SCUMMVM_DATA / "drascula/en", read_drascula_speech, _pcm_u8,
         "freely redistributable game data (debian/copyright: Drascula-License)"),
    Game("bass", "beneath-a-steel-sky", SCUMMVM_DATA / "beneath-a-steel-sky/sky.dsk", read_bass_speech, _decode_bass,
         "freely redistributable game data (debian/copyright: Beneath-a-Steel-Sky-License)"),
)}
