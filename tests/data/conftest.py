"""Fixtures: real image files (JPEG, PNG, grayscale, CMYK, corrupt) written into tmp dirs."""
import numpy as np
import pytest

from tests.helpers import encode, sample_photos, slim_example, write_tfrecords


@pytest.fixture(scope="session")
def photo():
    """A 300 x 451 colour photograph (skimage's chelsea)."""
    return sample_photos()["chelsea"]


@pytest.fixture(scope="session")
def image_files():
    """name -> (bytes, decodable) for every kind of file the pipelines must handle."""
    photos = sample_photos()
    jpeg = encode(photos["coffee"], "JPEG")
    return {
        "colour.jpg": (encode(photos["chelsea"], "JPEG"), True),
        "photo.png": (encode(photos["astronaut"][::2, ::2], "PNG"), True),
        "gray.jpg": (encode(photos["coffee"], "JPEG", mode="L"), True),
        "cmyk.jpg": (encode(photos["chelsea"], "JPEG", mode="CMYK"), True),
        "png_named.jpg": (encode(photos["coffee"][::3, ::3], "PNG"), True),
        "truncated.jpg": (jpeg[:len(jpeg) // 2], False),
        "text.jpg": (b"this is not an image at all, just text", False),
        "empty.png": (b"", False),
        # Passes the structural check (SOI ... EOI) yet fails in the decoder: the safety net.
        "zz_garbled.jpg": (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 2 + b"\xff\xd9", False),
    }


@pytest.fixture
def image_folder(tmp_path, image_files):
    """<root>/{train,validation}/{cat,dog}/ with good and bad files; returns (root, expected)."""
    names = sorted(image_files)
    expected = {"train": [], "validation": []}
    for i, name in enumerate(names):
        split = "train" if i % 4 else "validation"
        for label, cls in enumerate(("cat", "dog")):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            data, ok = image_files[name]
            (folder / name).write_bytes(data)
            expected[split].append((str(folder / name), label, ok))
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image: ignored by extension")
    return tmp_path, expected


@pytest.fixture
def tfrecord_dir(tmp_path, image_files):
    """slim-layout shards: train (4 shards) and validation (2); returns (dir, expected)."""
    names = sorted(image_files)
    expected = {}
    for split, num_shards in (("train", 4), ("validation", 2)):
        examples, rows = [], []
        for i in range(3):
            for j, name in enumerate(names):
                label = 1 + (i * len(names) + j) % 5  # 1-based
                boxes = [(0.1, 0.2, 0.8, 0.9)] if j % 2 else []
                filename = f"{split}_{i}_{name}"
                examples.append(slim_example(image_files[name][0], label, filename, boxes))
                rows.append((filename, label - 1, image_files[name][1]))
        write_tfrecords(str(tmp_path), split, examples, num_shards)
        expected[split] = rows
    return tmp_path, expected


@pytest.fixture
def rng():
    return np.random.default_rng(0)
