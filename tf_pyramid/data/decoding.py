"""In-graph check that encoded bytes look like a complete image the decoders can read.

TensorFlow has no decode op that reports failure instead of raising, so the pipeline checks the
cheap structural facts first (format signature, end-of-image marker) and turns the answer into a
validity flag: invalid files are skipped and counted, or, under `strict`, raise an error naming the
file. Files that pass the check and still fail to decode are rare (damaged entropy data); outside
`strict` mode the pipeline drops those too (`Dataset.ignore_errors`).
"""
import tensorflow as tf

_TAIL_BYTES = 64  # end markers are looked for in this many final bytes (trailing junk is common)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _tail_contains(tail, pattern):
    """Whether the uint8 vector `tail` contains the byte string `pattern`."""
    count = tf.maximum(tf.size(tail) - len(pattern) + 1, 0)
    match = tf.ones([count], tf.bool)
    for i, byte in enumerate(pattern):
        match = match & tf.equal(tail[i:i + count], byte)
    return tf.reduce_any(match)


def looks_decodable(encoded):
    """Scalar bool: JPEG with SOI and EOI markers, PNG with signature and IEND, GIF, or BMP."""
    length = tf.strings.length(encoded)
    tail = tf.io.decode_raw(
        tf.strings.substr(encoded, tf.maximum(length - _TAIL_BYTES, 0), _TAIL_BYTES), tf.uint8)

    def starts_with(prefix):
        return tf.equal(tf.strings.substr(encoded, 0, len(prefix)), prefix)

    jpeg = starts_with(b"\xff\xd8\xff") & _tail_contains(tail, b"\xff\xd9")
    png = starts_with(_PNG_SIGNATURE) & _tail_contains(tail, b"IEND")
    gif = starts_with(b"GIF87a") | starts_with(b"GIF89a")
    bmp = starts_with(b"BM") & (length > 54)
    return (length > 16) & (jpeg | png | gif | bmp)


def assert_decodable(valid, name):
    """Raises InvalidArgumentError naming the file when `valid` is False (strict mode)."""
    return tf.debugging.Assert(valid, ["Undecodable image file (strict=True):", name],
                               summarize=1)
