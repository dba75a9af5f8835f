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
JPEG_SIGNATURE = b"\xff\xd8\xff"  # SOI marker + the first byte of the next marker


# Format signatures, in the order looks_decodable reads its matches.
_SIGNATURES = (JPEG_SIGNATURE, _PNG_SIGNATURE, b"GIF87a", b"GIF89a", b"BM")


def _tail_contains(tail, pattern):
    """Whether `tail` (a string of _TAIL_BYTES bytes or more) contains `pattern`: all its
    len(pattern)-byte substrings at once (one substr, one comparison: cheap per example)."""
    count = _TAIL_BYTES - len(pattern) + 1
    return tf.reduce_any(tf.equal(
        tf.strings.substr(tail, tf.range(count), tf.fill([count], len(pattern))), pattern))


def looks_decodable(encoded):
    """Scalar bool: JPEG with SOI and EOI markers, PNG with signature and IEND, GIF, or BMP.

    About 15 ops on the first 8 and the last 64 bytes: ~43 us per element in a tf.data map,
    against ~76 us for the same test on a uint8 array of the bytes.
    """
    length = tf.strings.length(encoded)
    # Zero bytes appended to short files: substr needs every position inside the string.
    tail = tf.strings.join([tf.strings.substr(encoded, tf.maximum(length - _TAIL_BYTES, 0),
                                              _TAIL_BYTES), b"\x00" * _TAIL_BYTES])
    starts = tf.equal(tf.strings.substr(encoded, [0] * len(_SIGNATURES),
                                        [len(s) for s in _SIGNATURES]), _SIGNATURES)
    jpeg = starts[0] & _tail_contains(tail, b"\xff\xd9")
    png = starts[1] & _tail_contains(tail, b"IEND")
    bmp = starts[4] & (length > 54)
    return (length > 16) & (jpeg | png | starts[2] | starts[3] | bmp)


def assert_decodable(valid, name):
    """Raises InvalidArgumentError naming the file when `valid` is False (strict mode)."""
    return tf.debugging.Assert(valid, ["Undecodable image file (strict=True):", name],
                               summarize=1)
