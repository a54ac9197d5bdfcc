"""The aiohttp application: `GET /` (the upload page), `POST /predict`, `GET /health`.

aiohttp parses HTTP and multipart and enforces the body limit; a refused upload answers
`{"error": ...}` with a 4xx and the server carries on. The model runs in one worker thread at a
time (Keras models are not safe to call from several threads at once), off the event loop, so the
health check answers while an image is being scored.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any

import numpy as np
from aiohttp import web

from cifar_ops.errors import UsageError
from cifar_ops.inference import SavedModel, tta_of
from cifar_ops.serving.decode import DEFAULT_MAX_PIXELS, UploadError, decode_upload

MODEL_KEY: web.AppKey[Any] = web.AppKey("model", object)
MAX_BYTES_KEY: web.AppKey[int] = web.AppKey("max_bytes", int)
_FIELDS = ("file", "image")  # multipart field names taken, else the first part with a filename


class Predictor:
    """One saved model, called by one thread at a time."""

    def __init__(self, saved: SavedModel, model_ref: str, max_pixels: int):
        self.saved = saved
        self.model_ref = model_ref
        self.max_pixels = max_pixels
        self.tta = tta_of(saved)
        self._lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="serve")

    def predict(self, data: bytes) -> dict[str, Any]:
        from cifar_ops.evaluation import predict_split

        upload = decode_upload(data, self.saved.image_size, max_pixels=self.max_pixels)
        with self._lock:
            row = predict_split(self.saved.model, upload.pixels[np.newaxis], tta=self.tta)[0]
        order = np.argsort(-row, kind="stable")
        names = self.saved.class_names
        return {
            "predicted": names[int(order[0])],
            "confidence": float(row[order[0]]),
            "classes": [{"name": names[int(i)], "probability": float(row[i])} for i in order],
            "image": {
                "width": upload.width,
                "height": upload.height,
                "mode": upload.mode,
                "format": upload.format,
            },
        }


def create_app(
    saved: SavedModel,
    *,
    model_ref: str,
    max_bytes: int = 10 * 1024 * 1024,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> web.Application:
    """The application for one loaded model (tests run it on an ephemeral port)."""
    app = web.Application(client_max_size=max_bytes, middlewares=[_json_errors])
    app[MODEL_KEY] = Predictor(saved, model_ref, max_pixels)
    app[MAX_BYTES_KEY] = max_bytes
    app.router.add_get("/", _page)
    app.router.add_get("/health", _health)
    app.router.add_post("/predict", _predict)
    app.on_cleanup.append(_shutdown_pool)
    return app


def serve_forever(
    saved: SavedModel,
    *,
    host: str,
    port: int,
    max_bytes: int,
    model_ref: str,
    announce: Callable[[str], None],
) -> None:
    """Serve until SIGINT or SIGTERM; `announce(url)` once listening (port 0: the one chosen)."""

    async def main() -> None:
        runner = web.AppRunner(
            create_app(saved, model_ref=model_ref, max_bytes=max_bytes), access_log=None
        )
        await runner.setup()
        try:
            try:
                await web.TCPSite(runner, host, port).start()
            except OSError as exc:
                raise UsageError(
                    f"--port {port}: cannot listen on {host}:{port} ({exc.strerror or exc}); "
                    "pick another port or 0 for a free one"
                ) from None
            bound = runner.addresses[0]
            shown = f"[{bound[0]}]" if ":" in str(bound[0]) else bound[0]
            announce(f"http://{shown}:{bound[1]}/")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())


@web.middleware
async def _json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """aiohttp's own refusals (413 body too large, 404, 405) as JSON with a message."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text or exc.reason
        if exc.status == 413:
            message = f"upload too large: the limit is {request.app[MAX_BYTES_KEY]:,} bytes"
        return web.json_response({"error": message}, status=exc.status)


async def _page(request: web.Request) -> web.Response:
    html = resources.files("cifar_ops.serving").joinpath("page.html").read_text()
    return web.Response(text=html, content_type="text/html")


async def _health(request: web.Request) -> web.Response:
    predictor = request.app[MODEL_KEY]
    return web.json_response(
        {
            "status": "ok",
            "model": predictor.model_ref,
            "classes": predictor.saved.class_names,
            "image_size": predictor.saved.image_size,
        }
    )


async def _predict(request: web.Request) -> web.Response:
    predictor = request.app[MODEL_KEY]
    try:
        data = await _upload_bytes(request)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(predictor.pool, predictor.predict, data)
    except UploadError as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)
    return web.json_response(result)


async def _upload_bytes(request: web.Request) -> bytes:
    """The image of a multipart form (field `file` or `image`, else the first file) or the raw
    request body."""
    if request.content_type != "multipart/form-data":
        return await request.read()
    form = await request.post()
    for name in _FIELDS:
        part = form.get(name)
        if isinstance(part, web.FileField):
            return part.file.read()
    for part in form.values():
        if isinstance(part, web.FileField):
            return part.file.read()
    raise UploadError(
        f"the form has no file: send the image as a file field named {' or '.join(_FIELDS)}"
    )


async def _shutdown_pool(app: web.Application) -> None:
    app[MODEL_KEY].pool.shutdown(wait=False)
