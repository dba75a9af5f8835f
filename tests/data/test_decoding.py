"""decoding.looks_decodable against a plain-Python statement of the same rules, on real image
headers, damaged files and random bytes, eagerly and in Dataset.map."""
import numpy as np
import tensorflow as tf

from tf_pyramid.data import decoding


def reference(data):
    """The rules in Python: signature at the start, end marker in the last 64 bytes."""
    tail = data[-64:]
    jpeg = data.startswith(b"\xff\xd8\xff") and b"\xff\xd9" in tail
    png = data.startswith(b"\x89PNG\r\n\x1a\n") and b"IEND" in tail
    gif = data.startswith((b"GIF87a", b"GIF89a"))
    bmp = data.startswith(b"BM") and len(data) > 54
    return len(data) > 16 and (jpeg or png or gif or bmp)


def _cases(image_files, rng):
    cases = [data for data, _ in image_files.values()]
    jpeg = image_files["colour.jpg"][0]
    cases += [jpeg + b"\x00" * 30, jpeg + b"\x00" * 70,  # trailing junk: inside / past 64 bytes
              jpeg[:-1], jpeg[:-2] + b"\xff\x00",  # end marker cut
              b"\xff\xd8\xff" + b"\x00" * 13 + b"\xff\xd9",  # 18 bytes, markers at both ends
              b"\xff\xd8\xff\xd9" + b"\x00" * 10,  # 14 bytes: too short
              b"GIF89a" + bytes(20), b"GIF88a" + bytes(20), b"BM" + bytes(53), b"BM" + bytes(52),
              b"\x89PNG\r\n\x1a\n" + bytes(60) + b"IEND",
              b"\x89PNG\r\n\x1a\n" + b"IEND" + bytes(70)]
    for _ in range(200):  # random bytes with planted signatures and markers at random places
        body = bytearray(rng.integers(0, 256, int(rng.integers(0, 150)), dtype=np.uint8).tobytes())
        head = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"BM", b"")[rng.integers(5)]
        marker = (b"\xff\xd9", b"IEND", b"")[rng.integers(3)]
        at = int(rng.integers(0, len(body) + 1))
        cases.append(head + bytes(body[:at]) + marker + bytes(body[at:]))
    return cases


def test_check_agrees_with_the_python_rules(image_files, rng):
    cases = _cases(image_files, rng)
    expected = [reference(data) for data in cases]
    assert 30 < sum(expected) < len(cases) - 30  # both answers are well represented
    eager = [bool(decoding.looks_decodable(tf.constant(data))) for data in cases]
    mapped = list(tf.data.Dataset.from_tensor_slices(cases).map(decoding.looks_decodable)
                  .as_numpy_iterator())
    assert eager == expected
    assert [bool(v) for v in mapped] == expected
    for name, (data, decodable) in image_files.items():
        if name != "zz_garbled.jpg":  # passes the check by design, fails in the decoder
            assert reference(data) == decodable, name
