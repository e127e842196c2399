"""rosbag2 storage integrity, without decoding messages: mcap chunk CRCs and record structure,
sqlite3 ``quick_check``.

mcap bags written by :func:`vsda_ros.data.bag_writer.write_bag` carry a CRC-32 per chunk
(rosbags writes 0, "not available"; :func:`seal_mcap` fills it in after writing, as the MCAP
spec defines it: CRC-32 of the uncompressed records). :func:`check_storage` walks the data
section record by record (:func:`_mcap_chunks`), checks every chunk CRC that is not 0, and for
sqlite3 runs ``PRAGMA quick_check``. sqlite3 has no checksums of its own: a damaged *message
payload* in a ``.db3`` cannot be detected, only damage to its structure.

Pure Python, no rclpy and no rosbags: the lowest layer of :mod:`vsda_ros.data`'s bag modules.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

#: file suffixes of rosbag2 storage files (mcap, sqlite3).
BAG_SUFFIXES = ('.mcap', '.db3')

_MCAP_MAGIC = b'\x89MCAP0\r\n'
_OP_FOOTER, _OP_CHUNK, _OP_DATA_END = 0x02, 0x06, 0x0F
#: offset of ``uncompressed_crc`` in a chunk record: op (1) + length (8) + start, end and
#: uncompressed size (3 × 8).
_CHUNK_CRC_AT = 9 + 24


class _Broken(Exception):
    """The mcap record structure is damaged (a length runs past the file, an unknown op)."""


@dataclass
class _Chunk:
    index: int
    offset: int  # of the chunk record (its op byte)
    start: int  # message log times, ns
    end: int
    uncompressed_size: int
    crc: int
    compression: str
    data_offset: int  # of the (compressed) records
    data_size: int

    def where(self) -> str:
        return (
            f'chunk {self.index} at byte {self.offset} (log time {self.start * 1e-9:.3f}–'
            f'{self.end * 1e-9:.3f} s)'
        )


def storage_files(folder: Path) -> list[Path]:
    """The ``.mcap``/``.db3`` files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix in BAG_SUFFIXES and p.is_file())


def _storage_file(path: Path) -> Path | None:
    """The one ``.mcap``/``.db3`` file of a bag (``None`` when there are several or none)."""
    if path.is_file():
        return path
    files = storage_files(path) if path.is_dir() else []
    return files[0] if len(files) == 1 else None


def _mcap_chunks(fh: Any, size: int) -> Iterator[_Chunk]:
    """The chunk records of an mcap file, walking its data section record by record.

    Raises:
        _Broken: not an mcap file, a record that runs past the end of the file, a record type
            that cannot occur (0 or 0x10–0x7f), or no Data End / Footer record (truncated).
    """
    fh.seek(0)
    if fh.read(8) != _MCAP_MAGIC:
        raise _Broken('not an mcap file (bad magic bytes)')
    pos, index = 8, 0
    while pos + 9 <= size:
        fh.seek(pos)
        op, length = struct.unpack('<BQ', fh.read(9))
        body = pos + 9
        if op == 0 or 0x10 <= op < 0x80 or body + length > size:
            raise _Broken(
                f'record structure broken at byte {pos} (type 0x{op:02x}, length '
                f'{length} of a {size}-byte file)'
            )
        if op in (_OP_DATA_END, _OP_FOOTER):
            return
        if op == _OP_CHUNK:
            if length < 40:
                raise _Broken(f'chunk record at byte {pos} is only {length} bytes')
            start, end, usize, crc, clen = struct.unpack('<QQQII', fh.read(32))
            compression = fh.read(clen).decode('utf-8', 'replace')
            (dsize,) = struct.unpack('<Q', fh.read(8))
            data_offset = body + 28 + 4 + clen + 8
            if data_offset + dsize > body + length:
                raise _Broken(f'chunk record at byte {pos}: its records run past the chunk')
            yield _Chunk(index, pos, start, end, usize, crc, compression, data_offset, dsize)
            index += 1
        pos = body + length
    raise _Broken(f'the file ends at byte {size} before its Data End record (truncated)')


def _decompress(data: bytes, compression: str) -> bytes:
    if compression == '':
        return data
    if compression == 'lz4':
        import lz4.frame

        return lz4.frame.decompress(data)
    if compression == 'zstd':
        try:
            from compression import zstd  # Python ≥ 3.14
        except ImportError:
            from backports import zstd  # what rosbags uses before 3.14
        return zstd.decompress(data)
    raise ValueError(f'unknown chunk compression {compression!r}')


def _check_mcap(file: Path) -> list[str]:
    """One line per damaged chunk (CRC or size mismatch, undecompressable) or broken record
    structure; chunks with CRC 0 ("not available") cannot be checked and are passed."""
    problems: list[str] = []
    with file.open('rb') as fh:
        try:
            for chunk in _mcap_chunks(fh, os.fstat(fh.fileno()).st_size):
                if not chunk.crc:
                    continue
                fh.seek(chunk.data_offset)
                try:
                    raw = _decompress(fh.read(chunk.data_size), chunk.compression)
                except Exception as exc:  # noqa: BLE001 - any decoder error is damage
                    problems.append(f'{chunk.where()}: cannot decompress ({exc})')
                    continue
                if len(raw) != chunk.uncompressed_size or zlib.crc32(raw) != chunk.crc:
                    problems.append(f'{chunk.where()}: checksum mismatch')
        except (_Broken, struct.error) as exc:
            problems.append(str(exc) or 'record structure broken')
    return problems


def _check_sqlite(file: Path) -> list[str]:
    """``PRAGMA quick_check`` of a ``.db3`` opened read-only: its structural problems."""
    import sqlite3

    try:
        con = sqlite3.connect(f'{file.resolve().as_uri()}?mode=ro', uri=True)
    except sqlite3.Error as exc:
        return [f'sqlite3: {exc}']
    try:
        rows = [r[0] for r in con.execute('PRAGMA quick_check(5)').fetchall()]
    except sqlite3.Error as exc:
        return [f'sqlite3: {exc}']
    finally:
        con.close()
    if rows == ['ok']:
        return []
    lines = [line.strip() for row in rows for line in str(row).splitlines()]
    return [f'sqlite3 quick_check: {line}' for line in lines if line and not line.startswith('***')]


def check_storage(path: str | Path) -> list[str]:
    """Damage found in a bag's storage file without decoding messages: one line per problem,
    ``[]`` when none was found.

    mcap: the record structure of the data section and the CRC-32 of every chunk that carries
    one (bags from :func:`~vsda_ros.data.bag_writer.write_bag` do; chunks with CRC 0 cannot be
    checked). sqlite3: ``PRAGMA quick_check`` (structure only: sqlite keeps no checksum of the
    message data). Reads the whole file once. A bag split into several storage files is not
    checked (``[]``).
    """
    file = _storage_file(Path(path))
    if file is None:
        return []
    if file.suffix == '.mcap':
        return _check_mcap(file)
    if file.suffix == '.db3':
        return _check_sqlite(file)
    return []


def seal_mcap(file: str | Path) -> int:
    """Fill in the CRC-32 of every chunk of an mcap file whose CRC is 0; returns how many.

    ``rosbags`` 0.11 writes every chunk with ``uncompressed_crc`` 0 ("not available"), so a
    damaged chunk would be read as if it were fine. The MCAP spec defines the chunk CRC as the
    CRC-32 of the uncompressed records; this walks the file's chunks and patches each CRC in
    place (4 bytes per chunk; nothing else changes).

    Raises:
        ValueError: the file's record structure is broken.
    """
    file = Path(file)
    sealed = 0
    with file.open('r+b') as fh:
        try:
            chunks = list(_mcap_chunks(fh, os.fstat(fh.fileno()).st_size))
        except _Broken as exc:
            raise ValueError(f'cannot seal {file}: {exc}') from None
        for chunk in chunks:
            if chunk.crc:
                continue
            fh.seek(chunk.data_offset)
            raw = _decompress(fh.read(chunk.data_size), chunk.compression)
            fh.seek(chunk.offset + _CHUNK_CRC_AT)
            fh.write(struct.pack('<I', zlib.crc32(raw)))
            sealed += 1
    return sealed
