"""Download a file with a progress bar, resume support and a sha256 check.

Partial downloads live next to the target as ``<name>.part`` and are resumed with an HTTP
``Range`` request; a finished file whose sha256 does not match is deleted and refused.

:func:`file_sha256` hashes a file once per version — (real path, size, mtime_ns) — memoised in
the process and recorded in ``VSDA_CACHE_DIR/sha256.json``, so checking the weights at every
model load (and every node restart) costs a ``stat``, not a read of the whole file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from vsda_ros.paths import cache_dir

CHUNK = 1 << 16
#: the digest record under ``VSDA_CACHE_DIR``: {real path: {size, mtime_ns, sha256}}.
DIGEST_FILE = 'sha256.json'
_HEX64 = re.compile(r'[0-9a-f]{64}')
#: in-process memo: (real path, size, mtime_ns) → sha256.
_DIGESTS: dict[tuple[str, int, int], str] = {}


class FetchError(RuntimeError):
    """A download failed, or its content did not match the expected sha256."""


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, hashed once per (real path, size, mtime_ns).

    The digest is memoised in this process and recorded in ``VSDA_CACHE_DIR/sha256.json``
    (written atomically; an unreadable or unwritable record only costs a re-hash), so a
    restart reuses it. A file that is modified changes its size or mtime and is hashed again.

    Raises:
        OSError: the file cannot be read (e.g. ``FileNotFoundError``).
    """
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns)
    if key in _DIGESTS:
        return _DIGESTS[key]
    entry = _read_record().get(real)
    if (
        isinstance(entry, dict)
        and entry.get('size') == st.st_size
        and entry.get('mtime_ns') == st.st_mtime_ns
        and isinstance(entry.get('sha256'), str)
        and _HEX64.fullmatch(entry['sha256'])
    ):
        digest = entry['sha256']
    else:
        digest = sha256_of(real)
        _record(real, st.st_size, st.st_mtime_ns, digest)
    _DIGESTS[key] = digest
    return digest


def _record_path() -> Path:
    return cache_dir() / DIGEST_FILE


def _read_record() -> dict:
    try:
        data = json.loads(_record_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _record(real: str, size: int, mtime_ns: int, digest: str) -> None:
    """Add one digest to the record; entries of files that are gone are dropped."""
    record = {k: v for k, v in _read_record().items() if os.path.exists(k)}
    record[real] = {'size': size, 'mtime_ns': mtime_ns, 'sha256': digest}
    target = _record_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=DIGEST_FILE, dir=target.parent)
        try:
            with os.fdopen(fd, 'w') as f:
                json.dump(record, f, indent=1, sort_keys=True)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass  # a read-only cache: the digest is still memoised in this process


def fetch_file(
    url: str, dest: str | Path, sha256: str, progress: bool = True, timeout: float = 60.0
) -> Path:
    """Download ``url`` to ``dest`` unless a file with the right sha256 is already there.

    Raises:
        FetchError: network/HTTP failure (the partial file is kept for a later resume) or a
            sha256 mismatch (the bad file is deleted).
    """
    dest = Path(dest)
    if dest.is_file():
        if file_sha256(dest) == sha256:
            return dest
        dest.unlink()  # a stale or corrupt file: fetch it again
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + '.part')
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={'Range': f'bytes={offset}-'} if offset else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if offset and response.status != 206:  # server ignored Range: start over
                offset = 0
            total = response.length + offset if response.length is not None else None
            mode = 'ab' if offset else 'wb'
            with (
                open(part, mode) as out,
                tqdm(
                    total=total,
                    initial=offset,
                    unit='B',
                    unit_scale=True,
                    desc=dest.name,
                    disable=not progress,
                ) as bar,
            ):
                for block in iter(lambda: response.read(CHUNK), b''):
                    out.write(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # the part file is already complete
            pass
        else:
            raise FetchError(f'download of {url} failed: HTTP {e.code} {e.reason}') from e
    except (urllib.error.URLError, OSError) as e:
        raise FetchError(f'download of {url} failed: {e} (partial file kept: {part})') from e
    digest = sha256_of(part)
    if digest != sha256:
        part.unlink()
        raise FetchError(
            f'sha256 mismatch for {url}: expected {sha256}, got {digest}; the file was deleted'
        )
    part.replace(dest)
    st = dest.stat()  # the digest of what was just checked: no re-hash at first load
    real = os.path.realpath(dest)
    _DIGESTS[(real, st.st_size, st.st_mtime_ns)] = digest
    _record(real, st.st_size, st.st_mtime_ns, digest)
    return dest
