"""A run's prefix in the object store: complete checkpoints and the files of a finished run.

Layout of `<CIFAR_OPS_ARTIFACTS>/<run_id>/`:
  config.json, classes.json, model.keras, best.keras   uploaded as the run writes them locally
  checkpoint/<stem>/<file>                              the parts of one checkpoint
  checkpoint/<stem>.manifest.json                       written last: the parts and their sha256

A checkpoint exists for a reader only once its manifest does, and the manifest is uploaded after
every part: a pod killed mid-upload leaves parts without a manifest, which a resume ignores (and
the next save deletes). A resume downloads the newest manifest's parts into the local scratch
directory and checks each one's sha256; a checkpoint whose parts are missing or altered is
skipped for the one before it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cifar_ops.errors import StorageError
from cifar_ops.redaction import redact_url
from cifar_ops.storage import objects
from cifar_ops.storage.urls import join

log = logging.getLogger(__name__)

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_FORMAT = 1
CHECKPOINT_PREFIX = "checkpoint"


@dataclass(frozen=True)
class Manifest:
    """One complete checkpoint: where it sorts, and each part's local path, object and digest."""

    stem: str
    order: tuple[int, bool]  # (epochs done, phase done), as TrainingState.order
    parts: dict[str, dict[str, str]]  # local path (relative to the run dir) -> object, sha256

    def to_json(self) -> str:
        payload = {
            "format": MANIFEST_FORMAT,
            "stem": self.stem,
            "order": list(self.order),
            "parts": self.parts,
        }
        return json.dumps(payload, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: bytes | str) -> Manifest:
        payload = json.loads(text)
        if payload.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"manifest format {payload.get('format')!r}")
        epochs, done = payload["order"]
        parts = {
            str(rel): {"object": str(p["object"]), "sha256": str(p["sha256"])}
            for rel, p in payload["parts"].items()
        }
        for rel in parts:
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise ValueError(f"part path {rel!r} leaves the run directory")
        return cls(str(payload["stem"]), (int(epochs), bool(done)), parts)


class PublishedRun:
    """The object-store copy of one run directory (`url`: `<artifacts>/<run_id>`)."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def object_url(self, name: str) -> str:
        return join(self.url, name)

    def upload(self, local: Path, name: str) -> str:
        """Upload one finished file under `name`; returns its URL."""
        url = self.object_url(name)
        objects.upload(local, url)
        return url

    def download(self, name: str, local: Path) -> bool:
        return objects.download(self.object_url(name), local)

    # --- checkpoints ------------------------------------------------------------------------

    def publish_checkpoint(
        self, root: Path, stem: str, order: tuple[int, bool], parts: list[str]
    ) -> Manifest:
        """Upload `parts` (paths relative to `root`), then the manifest that makes them visible."""
        entries = {}
        for rel in parts:
            local = root / rel
            name = f"{CHECKPOINT_PREFIX}/{stem}/{Path(rel).name}"
            self.upload(local, name)
            entries[rel] = {"object": name, "sha256": sha256_file(local)}
        manifest = Manifest(stem, order, entries)
        objects.upload_bytes(
            manifest.to_json().encode(),
            self.object_url(f"{CHECKPOINT_PREFIX}/{stem}{MANIFEST_SUFFIX}"),
        )
        return manifest

    def manifests(self) -> list[Manifest]:
        """The readable manifests, newest first; an unreadable one is skipped with a warning."""
        prefix = self.object_url(CHECKPOINT_PREFIX)
        found = []
        for name in objects.list_names(prefix):
            if not name.endswith(MANIFEST_SUFFIX):
                continue
            url = join(prefix, name)
            data = objects.read_bytes(url)
            if data is None:
                continue
            try:
                found.append(Manifest.from_json(data))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning(
                    "checkpoint manifest %s is unreadable (%s); skipping it", redact_url(url), exc
                )
        return sorted(found, key=lambda m: m.order, reverse=True)

    def restore_newest(self, root: Path, newer_than: tuple[int, bool] | None) -> Manifest | None:
        """Download the newest complete checkpoint newer than `newer_than` into `root`.

        Each part goes to a temporary name, is checked against its sha256, and only when every
        part is good are they renamed into place. A bad checkpoint is skipped for the one before.
        """
        for manifest in self.manifests():
            if newer_than is not None and manifest.order <= newer_than:
                return None
            problem = self._fetch_parts(root, manifest)
            if problem is None:
                log.info("restored checkpoint %s from %s", manifest.stem, redact_url(self.url))
                return manifest
            log.warning(
                "checkpoint %s in the object store is unusable (%s); trying the one before",
                manifest.stem,
                problem,
            )
        return None

    def _fetch_parts(self, root: Path, manifest: Manifest) -> str | None:
        fetched: list[tuple[Path, Path]] = []
        try:
            for rel, part in manifest.parts.items():
                target = root / rel
                staging = target.with_name(f"{objects.TMP_PREFIX}restore-{target.name}")
                if not self.download(part["object"], staging):
                    return f"{part['object']} is missing"
                fetched.append((staging, target))
                if sha256_file(staging) != part["sha256"]:
                    return f"{part['object']} does not match its recorded sha256"
            for staging, target in fetched:
                os.replace(staging, target)
            fetched = []
            return None
        finally:
            for staging, _ in fetched:
                staging.unlink(missing_ok=True)

    def prune_checkpoints(self, keep: set[str]) -> None:
        """Delete every checkpoint (manifest first, then parts) whose stem is not in `keep`."""
        prefix = self.object_url(CHECKPOINT_PREFIX)
        names = objects.list_names(prefix)
        manifests = [n for n in names if n.endswith(MANIFEST_SUFFIX)]
        folders = [n for n in names if not n.endswith(MANIFEST_SUFFIX)]
        for name in manifests + folders:  # a checkpoint disappears before its parts do
            if name.removesuffix(MANIFEST_SUFFIX) in keep:
                continue
            try:
                objects.remove(join(prefix, name), recursive=name in folders)
            except StorageError as exc:  # an old checkpoint left behind costs space, not a run
                log.warning("%s", exc)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
