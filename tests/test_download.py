"""The downloader against a local HTTP server on 127.0.0.1 serving generated images."""

from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image, ImageOps

from taco.cli.download import main
from taco.data.sources.download import FAILURES_NAME, download, safe_target


def _jpeg(w, h, orientation=1, colour=(200, 30, 30)):
    image = Image.new("RGB", (w, h), colour)
    image.paste((20, 20, 220), (0, 0, w // 3, h // 3))
    exif = Image.Exif()
    if orientation != 1:
        exif[274] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


def _png_rgba(w, h):
    buffer = io.BytesIO()
    Image.new("RGBA", (w, h), (10, 200, 10, 128)).save(buffer, "PNG")
    return buffer.getvalue()


class _Server:
    """Routes: path -> behaviour. Counts requests per path."""

    def __init__(self):
        self.hits: dict[str, int] = {}
        self.routes: dict[str, tuple[str, bytes]] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                hits = server.hits[self.path] = server.hits.get(self.path, 0) + 1
                kind, body = server.routes.get(self.path, ("404", b""))
                if kind == "404":
                    self.send_error(404)
                    return
                if kind == "flaky" and hits == 1:
                    self.send_error(503)
                    return
                if kind == "slow":
                    time.sleep(1.5)
                if kind == "slow_once" and hits == 1:
                    time.sleep(1.5)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body[: len(body) // 2] if kind == "truncated" else body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def _record(i, name, w, h, url, url640=None):
    return {
        "id": i,
        "file_name": name,
        "width": w,
        "height": h,
        "flickr_url": url,
        "flickr_640_url": url640,
    }


def _dataset(server):
    s = server.url
    server.routes = {
        "/ok.jpg": ("ok", _jpeg(60, 40, orientation=6)),  # stored 60x40, shown 40x60
        "/flaky.jpg": ("flaky", _jpeg(50, 30)),
        "/trunc.jpg": ("truncated", _jpeg(50, 30)),
        "/slow.jpg": ("slow", _jpeg(50, 30)),
        "/slow_once.jpg": ("slow_once", _jpeg(50, 30)),
        "/rgba.png": ("ok", _png_rgba(32, 24)),
        "/small.jpg": ("ok", _jpeg(40, 30)),  # a 640-style smaller copy of an 80x60 photo
        "/wrong.jpg": ("ok", _jpeg(30, 50)),  # width and height swapped: must not pass
    }
    images = [
        _record(0, "batch_1/000000.JPG", 40, 60, f"{s}/ok.jpg"),
        _record(1, "batch_1/000001.jpg", 50, 30, f"{s}/flaky.jpg"),
        _record(2, "batch_1/000002.jpg", 50, 30, f"{s}/trunc.jpg"),
        _record(3, "batch_1/000003.jpg", 50, 30, f"{s}/slow.jpg"),
        _record(4, "batch_2/000004.jpg", 50, 30, f"{s}/slow_once.jpg"),
        _record(5, "batch_2/000005.jpg", 32, 24, f"{s}/rgba.png"),
        _record(6, "batch_2/000006.jpg", 80, 60, f"{s}/missing.jpg", f"{s}/small.jpg"),
        _record(7, "batch_2/000007.jpg", 50, 30, f"{s}/missing.jpg"),
        _record(8, "../evil.jpg", 50, 30, f"{s}/ok.jpg"),
        _record(9, "/abs/evil.jpg", 50, 30, f"{s}/ok.jpg"),
        _record(10, "batch_2/000010.jpg", 50, 30, f"{s}/wrong.jpg"),
    ]
    server.routes["/annotations.json"] = (
        "ok",
        json.dumps({"images": images, "annotations": [], "categories": []}).encode(),
    )
    return images


def test_download_reports_retries_resumes_and_stays_inside_root(tmp_path, server):
    _dataset(server)
    root = tmp_path / "taco"
    summary = download(
        root,
        f"{server.url}/annotations.json",
        workers=4,
        timeout=0.6,
        retries=2,
        backoff=0.01,
        progress=False,
    )
    by_name = {o.file_name: o for o in summary.outcomes}
    ok = [
        "batch_1/000000.JPG",
        "batch_1/000001.jpg",
        "batch_2/000004.jpg",
        "batch_2/000005.jpg",
        "batch_2/000006.jpg",
    ]
    for name in ok:
        assert by_name[name].status == "downloaded", by_name[name]
    assert server.hits["/flaky.jpg"] == 2  # failed once, succeeded on retry
    assert "truncated" in by_name["batch_1/000002.jpg"].reason
    assert server.hits["/trunc.jpg"] == 3  # retried, then given up
    assert by_name["batch_1/000003.jpg"].status == "failed"  # always slower than the timeout
    assert "HTTP 404" in by_name["batch_2/000007.jpg"].reason
    assert by_name["batch_2/000006.jpg"].url.endswith("/small.jpg")  # fell back to 640 copy
    assert "does not match" in by_name["batch_2/000010.jpg"].reason
    assert server.hits["/wrong.jpg"] == 1  # a wrong size is not retried
    assert by_name["../evil.jpg"].status == "refused"
    assert by_name["/abs/evil.jpg"].status == "refused"
    assert not (tmp_path / "evil.jpg").exists()

    # the files on disk: EXIF kept (the loader transposes), RGBA converted to RGB JPEG
    with Image.open(root / "batch_1/000000.JPG") as im:
        assert im.getexif().get(274) == 6 and ImageOps.exif_transpose(im).size == (40, 60)
    with Image.open(root / "batch_2/000005.jpg") as im:
        assert im.format == "JPEG" and im.mode == "RGB"
    assert not list(root.rglob("*.part"))

    failures = (root / FAILURES_NAME).read_text()
    assert "batch_1/000002.jpg" in failures and "../evil.jpg" in failures
    assert summary.count("failed") == 4 and summary.count("refused") == 2

    # a second run resumes: verified files are skipped, only the failures are tried again
    before = dict(server.hits)
    (root / "batch_1/000001.jpg").write_bytes(b"garbage")  # a corrupt file is fetched again
    again = download(
        root,
        f"{server.url}/annotations.json",
        workers=4,
        timeout=0.6,
        retries=0,
        backoff=0.01,
        progress=False,
    )
    statuses = {o.file_name: o.status for o in again.outcomes}
    assert statuses["batch_1/000000.JPG"] == "present"
    assert statuses["batch_1/000001.jpg"] == "downloaded"
    assert server.hits["/ok.jpg"] == before["/ok.jpg"]
    assert server.hits.get("/annotations.json") == 1  # the annotation file is not re-fetched


def test_symlinked_folder_leaving_the_root_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "batch_9").symlink_to(outside)
    with pytest.raises(ValueError, match="symlink"):
        safe_target(root, "batch_9/x.jpg")
    assert safe_target(root, "batch_1/x.jpg") == root / "batch_1" / "x.jpg"


def test_cli_exit_codes_and_message(tmp_path, server, capsys):
    _dataset(server)
    server.routes["/bad.json"] = ("ok", b"<html>not json</html>")
    with pytest.raises(SystemExit) as exit_:
        main(["--root", str(tmp_path / "a"), "--annotations-url", f"{server.url}/bad.json"])
    assert exit_.value.code == 1 and "did not return valid JSON" in capsys.readouterr().err
    code = main(
        [
            "--root",
            str(tmp_path / "b"),
            "--annotations-url",
            f"{server.url}/annotations.json",
            "--limit",
            "2",
            "--timeout",
            "1",
        ]
    )
    out = capsys.readouterr()
    assert code == 0 and "2 downloaded" in out.out


def test_download_then_load_as_dataset_taco(tmp_path, compose_cfg):
    """End to end offline: a TACO-format set served over HTTP, downloaded, loaded, cached."""
    import functools
    from http.server import SimpleHTTPRequestHandler

    from taco.config import build
    from taco.data.sources.synthetic import SyntheticTaco

    source = tmp_path / "served"
    SyntheticTaco(num_images=20, image_size=(96, 72)).write(source)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(source))
    handler.log_message = lambda *a: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        doc = json.loads((source / "annotations.json").read_text())
        for im in doc["images"]:
            im["flickr_url"] = f"{url}/{im['file_name']}"
        (source / "remote.json").write_text(json.dumps(doc))
        root = tmp_path / "data" / "taco"
        summary = download(root, f"{url}/remote.json", workers=4, timeout=5, progress=False)
        assert summary.count("downloaded") == 20 and not summary.failed
    finally:
        httpd.shutdown()
        httpd.server_close()
    cfg = compose_cfg(["dataset=taco", f"paths.data_dir={tmp_path}/data", "model.image_size=32"])
    dm = build(cfg.dataset, cache_dir=tmp_path / "cache")
    dm.prepare_data()
    dm.setup()
    assert dm.sample("train", 20).shape[1:] == (32, 32, 3) and not dm.skipped
    assert sum(len(dm.labels(part)) for part in ("train", "val", "test")) == 20
