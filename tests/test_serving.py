"""`cifar-ops serve` as a real process: the JSON endpoint (good, bad and hostile uploads, 200
sequential and 8 concurrent requests) and the upload page in headless Chromium."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import REPO
from tests.serving_support import train_tiny
from tests.test_report_e2e import CHROMIUM, Chromium

SHARED_JPEGS = REPO.parent / "shared" / "data" / "cifar10-train-jpeg.tar.gz"
SCREENSHOT = REPO / ".artifacts" / "serve-screenshot.png"
MAX_UPLOAD_MB = 1


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A tiny model served by `cifar-ops serve --port 0` in its own process."""
    base = tmp_path_factory.mktemp("serve")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(base)
        patch.setenv("CIFAR_OPS_ARTIFACTS", str(base / "runs"))
        patch.setenv("CIFAR_OPS_DATA_CACHE", str(base / "cache"))
        trained = train_tiny(base)
    command = [sys.executable, "-m", "cifar_ops", "serve", trained["model"], "--port", "0",
               "--max-upload-mb", str(MAX_UPLOAD_MB)]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CIFAR_OPS_DATABASE_URL": trained["url"]}
    log = (base / "serve.log").open("w+")
    process = subprocess.Popen(command, cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = _wait_for_url(process, base / "serve.log")
        yield {"url": url, "process": process, "base": base, "log": base / "serve.log"}
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _wait_for_url(process: subprocess.Popen, log: Path, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"at (http://127\.0\.0\.1:\d+/)", log.read_text())
        if found:
            return found.group(1)
        if process.poll() is not None:
            raise RuntimeError(f"serve exited {process.returncode}: {log.read_text()}")
        time.sleep(0.2)
    raise TimeoutError(f"serve did not start: {log.read_text()}")


def request(url: str, data: bytes | None = None, content_type: str | None = None):
    """(status, JSON body) of a GET, or a POST of `data`."""
    headers = {"Content-Type": content_type} if content_type else {}
    sent = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(sent, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def multipart(field: str, filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def png(size: tuple[int, int] = (40, 24), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 128 if mode in ("L", "1") else (200, 40, 90)).save(buffer, "PNG")
    return buffer.getvalue()


def real_image(where: Path) -> Path:
    """A CIFAR-10 JPEG from the shared archive when it is here, else a drawn one."""
    target = where / "upload.jpg"
    if SHARED_JPEGS.is_file():
        with tarfile.open(SHARED_JPEGS) as archive:
            member = archive.getmember("train/cat/0000.jpg")
            target.write_bytes(archive.extractfile(member).read())  # type: ignore[union-attr]
    else:
        Image.new("RGB", (32, 32), (90, 140, 200)).save(target)
    return target


def test_health_and_predict_by_raw_bytes_and_multipart(server: dict) -> None:
    status, health = request(server["url"] + "health")
    assert status == 200 and health["status"] == "ok" and len(health["classes"]) == 4
    status, raw = request(server["url"] + "predict", png(), "image/png")
    assert status == 200, raw
    assert raw["predicted"] in health["classes"] and raw["image"]["width"] == 40
    assert sum(c["probability"] for c in raw["classes"]) == pytest.approx(1.0, abs=1e-4)
    assert raw["classes"][0]["name"] == raw["predicted"]
    body, kind = multipart("file", "x.png", png())
    status, form = request(server["url"] + "predict", body, kind)
    assert status == 200 and form["predicted"] == raw["predicted"]
    body, kind = multipart("photo", "y.png", png(mode="L"))  # any file field will do
    assert request(server["url"] + "predict", body, kind)[0] == 200


def _bomb() -> bytes:
    """A small PNG that decodes to 100 megapixels."""
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def test_bad_uploads_get_a_4xx_with_a_message_and_the_server_keeps_serving(server: dict) -> None:
    truncated = png((64, 64))[:60]
    no_file, form_kind = multipart("file", "", b"")
    no_file = no_file.replace(b'; filename=""', b"")
    cases = [
        (b"hello, not an image", "text/plain", 400, "not an image"),
        (truncated, "image/png", 400, "cannot"),
        (os.urandom(MAX_UPLOAD_MB * 1024 * 1024 + 10), "image/png", 413, "upload too large"),
        (_bomb(), "image/png", 413, "decompression bomb"),
        (png((8000, 6000), "1"), "image/png", 413, "over the 40,000,000 pixel limit"),
        (no_file, form_kind, 400, "the form has no file"),
    ]
    for data, kind, code, message in cases:
        status, body = request(server["url"] + "predict", data, kind)
        assert (status, message in body["error"]) == (code, True), (code, body)
        assert request(server["url"] + "health")[0] == 200
    assert server["process"].poll() is None
    status, body = request(server["url"] + "nowhere")
    assert status == 404 and body["error"]


def test_200_sequential_and_8_concurrent_requests_without_an_error(server: dict) -> None:
    images = [png((20 + i % 30, 20 + i % 17), ("RGB", "L", "RGBA")[i % 3]) for i in range(200)]
    url = server["url"] + "predict"
    sequential = [request(url, image, "image/png")[0] for image in images]
    assert sequential == [200] * 200
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(lambda image: request(url, image, "image/png"), images[:80]))
    assert [status for status, _ in concurrent] == [200] * 80
    assert all(body["predicted"] for _, body in concurrent)
    assert "Traceback" not in server["log"].read_text()


WAIT_DONE_JS = """new Promise((resolve) => {
  const check = () =>
    document.body.dataset.state === 'done' ? resolve(true) : setTimeout(check, 50);
  check();
})"""

SHOWN_JS = """(() => ({
  predicted: document.getElementById('predicted').dataset.class,
  text: document.getElementById('predicted').textContent,
  bars: [...document.querySelectorAll('#rows .row')].map((r) => [r.dataset.class,
    parseFloat(r.querySelector('.fill').style.width)]),
  error: document.getElementById('error').textContent,
  model: document.getElementById('model').textContent,
}))()"""


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_upload_page_in_headless_chromium(server: dict, tmp_path: Path) -> None:
    image = real_image(tmp_path)
    expected = request(server["url"] + "predict", image.read_bytes(), "image/jpeg")[1]
    with Chromium(tmp_path / "profile") as browser:
        browser.open(server["url"])
        found = browser.call("Runtime.evaluate", session=True,
                             expression="document.getElementById('file')")  # fmt: skip
        browser.call("DOM.enable", session=True)
        browser.call("DOM.setFileInputFiles", session=True, files=[str(image)],
                     objectId=found["result"]["objectId"])  # fmt: skip
        browser.evaluate(WAIT_DONE_JS)
        shown = browser.evaluate(SHOWN_JS)
        browser.screenshot(SCREENSHOT)
        errors = browser.console_errors()
        fetched = browser.requested_urls()
    assert errors == [], errors
    assert shown["error"] == "" and shown["predicted"] == expected["predicted"]
    assert len(shown["bars"]) == 4 and shown["bars"][0][0] == expected["predicted"]
    assert shown["bars"][0][1] == pytest.approx(100 * expected["confidence"], abs=0.1)
    assert "4 classes" in shown["model"]
    assert all(u.startswith((server["url"], "blob:", "data:")) for u in fetched), fetched
    assert SCREENSHOT.stat().st_size > 5_000
