"""Downloads: served by a local HTTP server on 127.0.0.1 from ../shared/data (no internet)."""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vsda_ros.cli import main
from vsda_ros.fetch import FetchError, fetch_file, sha256_of
from vsda_ros.models.zoo import ZOO


class _RangeHandler(SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler plus single ``bytes=N-`` Range requests (for resume)."""

    def log_message(self, *args):  # keep test output clean
        pass

    def send_head(self):
        rng = self.headers.get('Range')
        if not rng:
            return super().send_head()
        path = self.translate_path(self.path)
        start = int(rng.split('=')[1].split('-')[0])
        f = open(path, 'rb')
        size = f.seek(0, 2)
        f.seek(start)
        self.send_response(206)
        self.send_header('Content-Length', str(size - start))
        self.send_header('Content-Range', f'bytes {start}-{size - 1}/{size}')
        self.end_headers()
        return f


@pytest.fixture(scope='module')
def server(tmp_path_factory, real_data):
    root = tmp_path_factory.mktemp('mirror')
    (root / 'weights').mkdir()
    entry = ZOO['espnet-camvid']
    blob = (real_data / 'weights' / entry.filename).read_bytes()
    (root / 'weights' / entry.filename).write_bytes(blob)
    (root / 'weights' / 'corrupt.pth').write_bytes(blob[:-10] + b'0123456789')
    handler = functools.partial(_RangeHandler, directory=str(root))
    httpd = ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}', entry, blob
    httpd.shutdown()


def test_download_verifies_sha256(server, tmp_path):
    base, entry, blob = server
    dest = fetch_file(
        f'{base}/weights/{entry.filename}', tmp_path / 'w.pth', entry.sha256, progress=False
    )
    assert sha256_of(dest) == entry.sha256
    assert not (tmp_path / 'w.pth.part').exists()


def test_resume_from_partial_file(server, tmp_path):
    base, entry, blob = server
    (tmp_path / 'w.pth.part').write_bytes(blob[:1000])
    dest = fetch_file(
        f'{base}/weights/{entry.filename}', tmp_path / 'w.pth', entry.sha256, progress=False
    )
    assert dest.read_bytes() == blob


def test_corrupt_file_is_refused_and_removed(server, tmp_path):
    base, entry, _ = server
    with pytest.raises(FetchError, match='sha256 mismatch'):
        fetch_file(f'{base}/weights/corrupt.pth', tmp_path / 'w.pth', entry.sha256, progress=False)
    assert not (tmp_path / 'w.pth').exists() and not (tmp_path / 'w.pth.part').exists()


def test_missing_file_is_a_clear_error(server, tmp_path):
    base, entry, _ = server
    with pytest.raises(FetchError, match='HTTP 404'):
        fetch_file(f'{base}/weights/nope.pth', tmp_path / 'w.pth', entry.sha256, progress=False)


def test_cli_fetch_into_cache(server, tmp_path, monkeypatch, capsys):
    base, entry, _ = server
    monkeypatch.setenv('VSDA_CACHE_DIR', str(tmp_path / 'cache'))
    assert main(['fetch', 'espnet-camvid', '--base-url', base, '--quiet']) == 0
    cached = tmp_path / 'cache' / 'weights' / entry.filename
    assert sha256_of(cached) == entry.sha256
    assert 'sha256 ok' in capsys.readouterr().out


def test_weights_resolution_order(tmp_path, monkeypatch, real_data):
    """VSDA_DATA_DIR first, then the cache; neither and no download → a clear error."""
    from vsda_ros.models.zoo import find_weights

    entry = ZOO['espnet-camvid']
    assert find_weights(entry, download=False) == real_data / 'weights' / entry.filename
    monkeypatch.setenv('VSDA_DATA_DIR', str(tmp_path / 'none'))
    monkeypatch.setenv('VSDA_CACHE_DIR', str(tmp_path / 'cache'))
    with pytest.raises(FileNotFoundError, match='vsda fetch espnet-camvid'):
        find_weights(entry, download=False)
    (tmp_path / 'cache' / 'weights').mkdir(parents=True)
    (tmp_path / 'cache' / 'weights' / entry.filename).write_bytes(b'x')
    assert find_weights(entry, download=False) == tmp_path / 'cache' / 'weights' / entry.filename


def test_fetched_weights_load_without_a_rehash(server, tmp_path, monkeypatch):
    """A download records its (checked) digest: the first load from the cache trusts it."""
    from vsda_ros import fetch
    from vsda_ros.models.zoo import load_model

    base, entry, _ = server
    monkeypatch.setenv('VSDA_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.setenv('VSDA_DATA_DIR', str(tmp_path / 'none'))
    monkeypatch.setattr(fetch, '_DIGESTS', {})
    assert main(['fetch', entry.name, '--base-url', base, '--quiet']) == 0
    fetch._DIGESTS.clear()  # a new process: only the record under VSDA_CACHE_DIR is left
    monkeypatch.setattr(fetch, 'sha256_of', lambda path: pytest.fail(f're-hashed {path}'))
    assert load_model(entry.name, download=False, progress=False).meta.name == entry.name
