"""The web demo server on malformed request paths: a 400 or a 404, never a dropped
connection (issue 17: ``/index.html%00.png`` raised ValueError in the handler)."""

from __future__ import annotations

import http.client

import pytest

from pocketgan.web_demo_server import make_server, serve_in_thread


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The embedded bundle (it has a separate-mode ONNX export), a stand-in onnxruntime-web."""
    dist = tmp_path_factory.mktemp("ort-dist")
    (dist / "ort.wasm.min.mjs").write_text("export const fake = 1;\n")
    server = make_server(None, "127.0.0.1", 0, ort=dist)
    serve_in_thread(server)
    yield server
    server.shutdown()
    server.server_close()


def _status(server, path: str, method: str = "GET") -> int:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.mark.parametrize(
    "path",
    [
        "/index.html%00.png",
        "/%00",
        "/bundle/manifest.json%00",
        "/ort/ort.wasm.min.mjs%00",
        "/app.js%00/../style.css",
        "http://[/index.html",
        "/%00.js",
    ],
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_malformed_paths_get_400(server, path, method):
    assert _status(server, path, method) == 400


@pytest.mark.parametrize("path", ["/" + "a" * 5000 + ".js", "/bundle/" + "b" * 5000, "/%ff%fe.css", "/%c3%a9.js"])
def test_paths_no_file_can_have_get_404(server, path):
    assert _status(server, path) == 404


def test_the_server_still_serves_after_bad_requests(server):
    for path in ("/index.html%00.png", "http://[/x", "/" + "a" * 5000 + ".js"):
        _status(server, path)
    assert _status(server, "/") == 200
    assert _status(server, "/bundle/manifest.json") == 200
    assert _status(server, "/ort/ort.wasm.min.mjs") == 200
