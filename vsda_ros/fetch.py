"""Download a file with a progress bar, resume support and a sha256 check.

Partial downloads live next to the target as ``<name>.part`` and are resumed with an HTTP
``Range`` request; a finished file whose sha256 does not match is deleted and refused.
"""
from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

CHUNK = 1 << 16


class FetchError(RuntimeError):
    """A download failed, or its content did not match the expected sha256."""


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def fetch_file(url: str, dest: str | Path, sha256: str, progress: bool = True,
               timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` unless a file with the right sha256 is already there.

    Raises:
        FetchError: network/HTTP failure (the partial file is kept for a later resume) or a
            sha256 mismatch (the bad file is deleted).
    """
    dest = Path(dest)
    if dest.is_file():
        if sha256_of(dest) == sha256:
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
            with open(part, mode) as out, tqdm(
                    total=total, initial=offset, unit='B', unit_scale=True,
                    desc=dest.name, disable=not progress) as bar:
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
        raise FetchError(f'sha256 mismatch for {url}: expected {sha256}, got {digest}; '
                         'the file was deleted')
    part.replace(dest)
    return dest
