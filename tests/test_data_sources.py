"""Data sources: image files of any mode, image folders, the official CIFAR archive, synthetic."""

from __future__ import annotations

import functools
import http.server
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cifar_ops.config import DataConfig
from cifar_ops.data import DataError, load_dataset, load_image_file
from cifar_ops.data import cifar10 as cifar10_source
from cifar_ops.data import images as images_module
from tests.conftest import REPO
from tests.test_data_fixtures import CLASS_COLOURS, make_cifar_archive, make_folder, write_image

# shared/ lies beside the checkout (for developers and CI alike)
SHARED_JPEGS = REPO.parent / "shared" / "data" / "cifar10-train-jpeg.tar.gz"


# --- single files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "mode"),
    [("a.png", "RGB"), ("b.jpg", "RGB"), ("c.png", "L"), ("d.png", "RGBA"), ("e.png", "P")],
)
def test_any_image_mode_becomes_rgb_uint8_of_the_asked_size(
    tmp_path: Path, name: str, mode: str
) -> None:
    path = write_image(tmp_path / name, (200, 30, 30), size=(50, 20), mode=mode)
    array = load_image_file(path, 16)
    assert array.shape == (16, 16, 3)
    assert array.dtype == np.uint8
    expected = (81, 81, 81) if mode == "L" else (200, 30, 30)  # L keeps the red's luma
    tolerance = 12 if mode == "P" else 6  # palette conversion dithers
    assert np.abs(array.astype(int) - expected).max() <= tolerance


def test_transparent_pixels_become_white(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "clear.png"
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(path)
    assert (load_image_file(path, 4) == 255).all()


def test_corrupt_or_missing_image_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(DataError, match=r"broken\.jpg: cannot read image .*replace or delete"):
        load_image_file(bad, 8)
    with pytest.raises(DataError, match="nope.png: no such image file"):
        load_image_file(tmp_path / "nope.png", 8)


# --- image folders ------------------------------------------------------------------------------


def test_folder_with_train_and_test_uses_both_and_carves_validation(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs", {"cat": 10, "dog": 10, "frog": 10})
    make_folder(root, {"cat": 3, "dog": 3, "frog": 3}, split="test")
    data = load_dataset(DataConfig(source="folder", dir=str(root), image_size=12), seed=1)
    assert data.class_names == ["cat", "dog", "frog"]
    assert not data.test_is_held_out
    assert (len(data.train), len(data.validation), len(data.test)) == (24, 6, 9)
    assert data.train.images.shape == (24, 12, 12, 3) and data.train.images.dtype == np.uint8
    assert data.train.labels.dtype == np.int64
    assert all("/test/" in ref for ref in data.test.refs or [])
    for split in (data.train, data.validation, data.test):
        for image, label, ref in zip(split.images, split.labels, split.refs or [], strict=True):
            class_name = data.class_names[label]
            assert f"/{class_name}/" in ref
            assert np.abs(image.astype(int) - CLASS_COLOURS[class_name]).max() <= 6


def test_folder_without_split_dirs_holds_out_a_test_split(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "flat", {"cat": 10, "dog": 10}, split=None)
    config = DataConfig(source="folder", dir=str(root), test_split=0.2, validation_split=0.25)
    data = load_dataset(config, seed=0)
    assert data.test_is_held_out
    assert (len(data.train), len(data.validation), len(data.test)) == (12, 4, 4)
    assert np.bincount(data.test.labels).tolist() == [2, 2]
    refs = set(data.train.refs or []) | set(data.validation.refs or []) | set(data.test.refs or [])
    assert len(refs) == 20  # disjoint splits covering every file


def test_folder_validation_dir_is_used_as_it_is(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs", {"cat": 4, "dog": 4})
    make_folder(root, {"cat": 2, "dog": 1}, split="val")
    data = load_dataset(DataConfig(source="folder", dir=str(root)), seed=0)
    assert len(data.validation) == 3 and all("/val/" in r for r in data.validation.refs or [])
    assert len(data.train) + len(data.test) == 8


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", r"data.dir .*missing: no such directory; lay it out as <root>/<split>/<class>"),
        ("no_classes", r"no_classes: no class folders inside; lay it out as"),
        ("empty_class", r"empty_class/train/dog: class folder has no images \(.*\.jpg.*\)"),
        ("test_only", r"has test/ but no train/; add .*test_only/train/<class>/\*\.jpg"),
        ("corrupt", r"corrupt/train/cat/bad\.png: cannot read image"),
    ],
)
def test_bad_folders_say_what_is_wrong_and_the_fix(
    tmp_path: Path, layout: str, message: str
) -> None:
    root = tmp_path / layout
    if layout == "no_classes":
        (root / "loose.jpg").parent.mkdir(parents=True)
        write_image(root / "loose.jpg", (1, 2, 3))
    elif layout == "empty_class":
        make_folder(root, {"cat": 2})
        (root / "train" / "dog").mkdir()
    elif layout == "test_only":
        make_folder(root, {"cat": 2}, split="test")
    elif layout == "corrupt":
        make_folder(root, {"cat": 4, "dog": 4})
        (root / "train" / "cat" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=message):
        load_dataset(DataConfig(source="folder", dir=str(root)), seed=0)


def test_decoded_images_are_cached_and_the_cache_follows_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_folder(tmp_path / "imgs", {"cat": 5, "dog": 5}, split=None)
    config = DataConfig(source="folder", dir=str(root))
    first = load_dataset(config, seed=0)
    assert list((tmp_path / "data-cache" / "decoded").glob("*.npz"))

    def no_decoding(path: Path, size: int) -> np.ndarray:
        raise AssertionError(f"decoded {path} although it is cached")

    with monkeypatch.context() as patch:
        patch.setattr(images_module, "load_image_file", no_decoding)
        again = load_dataset(config, seed=0)
    assert again.fingerprint == first.fingerprint
    write_image(root / "cat" / "000.jpg", (0, 0, 0), size=(8, 8))  # new size and mtime
    changed = load_dataset(config, seed=0)
    assert changed.fingerprint != first.fingerprint


@pytest.mark.skipif(not SHARED_JPEGS.is_file(), reason="shared CIFAR-10 JPEG set not present")
def test_real_cifar_jpegs_load_as_a_folder(tmp_path: Path) -> None:
    with tarfile.open(SHARED_JPEGS) as archive:
        first_four = ("/0000.jpg", "/0001.jpg", "/0002.jpg", "/0003.jpg")
        wanted = [m for m in archive if m.isfile() and m.name.endswith(first_four)]
        archive.extractall(tmp_path / "real", members=wanted, filter="data")
    data = load_dataset(DataConfig(source="folder", dir=str(tmp_path / "real")), seed=0)
    assert len(data.class_names) == 10 and "airplane" in data.class_names
    assert len(data.train) + len(data.validation) + len(data.test) == 40
    assert data.train.images.shape[1:] == (32, 32, 3)
    assert data.train.images.std() > 20  # real pictures, not blank decodes


# --- the official CIFAR-10 archive --------------------------------------------------------------


def test_reads_the_official_archive_from_data_dir(tmp_path: Path) -> None:
    make_cifar_archive(tmp_path / "cifar")
    data = load_dataset(DataConfig(source="cifar10", dir=str(tmp_path / "cifar")), seed=0)
    assert data.class_names == [f"c{i}" for i in range(10)]
    assert not data.test_is_held_out and data.test.refs is None
    assert (len(data.train), len(data.validation), len(data.test)) == (80, 20, 20)
    for split in (data.train, data.validation, data.test):
        assert split.images.shape[1:] == (32, 32, 3)
        # The fake batches store label * 20 in the red plane: proves the CHW -> HWC reshape.
        assert (split.images[:, :, :, 0] == (split.labels * 20)[:, None, None]).all()


def test_reads_an_extracted_archive(tmp_path: Path) -> None:
    archive_path, _ = make_cifar_archive(tmp_path / "src")
    with tarfile.open(archive_path) as archive:
        archive.extractall(tmp_path / "cifar", filter="data")
    data = load_dataset(DataConfig(source="cifar10", dir=str(tmp_path / "cifar")), seed=0)
    from_tar = load_dataset(DataConfig(source="cifar10", dir=str(tmp_path / "src")), seed=0)
    assert data.fingerprint == from_tar.fingerprint


@pytest.fixture
def serve_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A local HTTP server on 127.0.0.1 serving a folder; yields (folder, base URL)."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


def test_downloads_into_the_cache_and_verifies_the_checksum(
    serve_dir: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, base = serve_dir
    _, md5 = make_cifar_archive(folder)
    monkeypatch.setattr(cifar10_source, "CIFAR10_URL", f"{base}/cifar-10-python.tar.gz")
    monkeypatch.setattr(cifar10_source, "CIFAR10_MD5", md5)
    data = load_dataset(DataConfig(source="cifar10"), seed=0)
    assert len(data.test) == 20
    cached = tmp_path / "data-cache" / "cifar-10-python.tar.gz"
    assert cached.is_file() and not list(cached.parent.glob("*.part"))


def test_checksum_mismatch_is_refused_and_nothing_is_kept(
    serve_dir: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, base = serve_dir
    make_cifar_archive(folder)
    monkeypatch.setattr(cifar10_source, "CIFAR10_URL", f"{base}/cifar-10-python.tar.gz")
    monkeypatch.setattr(cifar10_source, "CIFAR10_MD5", "0" * 32)
    target = tmp_path / "target"
    with pytest.raises(DataError, match=r"has md5 [0-9a-f]{32}, expected 0{32} .*deleted"):
        load_dataset(DataConfig(source="cifar10", dir=str(target)), seed=0)
    assert list(target.iterdir()) == []


def test_offline_error_says_where_to_put_the_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cifar10_source, "CIFAR10_URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    with pytest.raises(DataError) as caught:
        load_dataset(DataConfig(source="cifar10", dir=str(tmp_path / "here")), seed=0)
    message = str(caught.value)
    assert "cannot download CIFAR-10 from http://127.0.0.1:9/" in message
    assert f"put cifar-10-python.tar.gz (md5 {cifar10_source.CIFAR10_MD5}" in message
    assert str(tmp_path / "here") in message and "data.source=folder" in message


def test_truncated_archive_says_to_delete_it(tmp_path: Path) -> None:
    path, _ = make_cifar_archive(tmp_path / "cifar")
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match=r"cifar-10-python.tar.gz: cannot read .*delete it"):
        load_dataset(DataConfig(source="cifar10", dir=str(tmp_path / "cifar")), seed=0)


# --- synthetic ----------------------------------------------------------------------------------


def test_synthetic_is_deterministic_per_seed_and_balanced() -> None:
    config = DataConfig(source="synthetic", synthetic_images=300, num_classes=5, image_size=16)
    first, again, other = (load_dataset(config, seed=s) for s in (3, 3, 4))
    assert first.fingerprint == again.fingerprint != other.fingerprint
    assert np.array_equal(first.train.images, again.train.images)
    assert first.test_is_held_out and first.class_names == [f"class_{i}" for i in range(5)]
    assert first.train.images.shape[1:] == (16, 16, 3)
    all_labels = np.concatenate([first.train.labels, first.validation.labels, first.test.labels])
    assert np.bincount(all_labels).tolist() == [60] * 5
