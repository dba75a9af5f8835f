"""TF Serving warm-up requests written with every export (`assets.extra/tf_serving_warmup_requests`).

TF Serving replays this file when it loads a version, before the version takes traffic, so that
the first user request does not pay for building each signature's executor (and, on a GPU, for
picking convolution algorithms). The format is TF Serving's: a TFRecord file of serialized
`tensorflow.serving.PredictionLog` protos, each holding a `PredictRequest` for one signature.

The few messages involved are encoded here from their field numbers (PredictionLog.predict_log = 6,
PredictLog.request = 1, PredictRequest.model_spec = 1 and inputs = 2, a map entry's key = 1 and
value = 2, ModelSpec.signature_name = 3), so that exporting needs no `tensorflow-serving-api`; the
tests parse the file with that package's own protos.
"""
import os

import numpy as np
import tensorflow as tf

from tf_pyramid.serving import signatures as signatures_lib

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# Batch sizes sent to the signatures clients use (serving_default, anytime, serving_bytes); the
# per-level signatures get one image each. 8 is the smallest batch size the batching
# configuration in docs/serving.md allows beyond 1.
WARMUP_BATCH_SIZES = (1, 8)
PRODUCTION_SIGNATURES = ("serving_default", "anytime", "serving_bytes")
WARMUP_THRESHOLD = 0.9  # anytime: most untrained and trained images go past level 1


def _varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number, payload):
    """A length-delimited protobuf field (wire type 2: strings, bytes, messages)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def prediction_log(signature_name, inputs):
    """The serialized `PredictionLog` of a PredictRequest to `signature_name` with `inputs`
    ({input name: numpy array})."""
    model_spec = _field(3, signature_name.encode())
    request = _field(1, model_spec)
    for key in sorted(inputs):
        tensor = tf.make_tensor_proto(inputs[key]).SerializeToString()
        request += _field(2, _field(1, key.encode()) + _field(2, tensor))
    return _field(6, _field(1, request))


def sample_images(count, side, channels, seed=0):
    """Smooth 0-255 images (whole-number values, so that PNG/JPEG files carry the same pixels)
    of the model's input size: what a client would send, not noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, [count, side // 8 + 2, side // 8 + 2, channels])
    images = tf.image.resize(coarse.astype(np.float32), [side, side], method="bicubic")
    return np.round(np.clip(images.numpy(), 0, 255)).astype(np.float32)


def encode_images(images):
    """JPEG and PNG files, alternating (both decoders warm up); 1-channel images as
    grayscale files."""
    files = []
    for i, image in enumerate(images.astype(np.uint8)):
        encode = tf.io.encode_jpeg if i % 2 == 0 else tf.io.encode_png
        files.append(encode(image).numpy())
    return np.array(files, dtype=object)


def warmup_requests(functions):
    """[(signature name, {input name: array})] for a `ServingFunctions`: one image per level
    signature, `WARMUP_BATCH_SIZES` for the production signatures."""
    model = functions.model
    side, channels = int(model.input_size), int(model.channels)
    requests = []
    for name, _, _ in functions.endpoints():
        sizes = WARMUP_BATCH_SIZES if name in PRODUCTION_SIGNATURES else (1,)
        for size in sizes:
            images = sample_images(size, side, channels, seed=size)
            if name == "serving_bytes":
                inputs = {signatures_lib.IMAGE_BYTES: encode_images(images)}
            else:
                inputs = {signatures_lib.IMAGES: images}
            if name == "anytime":
                inputs[signatures_lib.THRESHOLD] = np.float32(WARMUP_THRESHOLD)
            requests.append((name, inputs))
    return requests


def write_warmup_requests(export_dir, functions):
    """Writes `export_dir/assets.extra/tf_serving_warmup_requests`; returns its path."""
    path = os.path.join(export_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for name, inputs in warmup_requests(functions):
            writer.write(prediction_log(name, inputs))
    return path
