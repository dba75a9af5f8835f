"""Reading TFRecord shards so that a damaged record costs itself, not the rest of its shard.

`tf.data.TFRecordDataset` ends a file at its first damaged record (DataLossError), and an
`ignore_errors` further down hides that: one flipped byte silently dropped every later record of
the shard. Here each shard is read by TensorFlow's reader as before, with `ignore_errors` on that
shard alone, and the byte offset of the next record is carried along (one add per record, in a
`scan`). When the reader stops before the end of the file, a recovery step (Python, once per
damaged shard and pass) walks on from that offset: a record whose length header is intact (its
own CRC matches) is skipped by its length and reading resumes after it; a damaged length header,
or a record cut short by the end of the file, loses the rest of the shard. What was lost is
counted and named per shard in a `LostRecordCounter` (one warning per pass), never silently.

TFRecord framing (uncompressed): uint64 length, uint32 masked CRC-32C of the length, the data,
uint32 masked CRC-32C of the data (little-endian).
"""
import collections
import struct
import threading

import tensorflow as tf
from absl import logging

from tf_pyramid.data import skipped_image_counter

RECORD_OVERHEAD = 16  # length (8), length CRC (4), data CRC (4)
_HEADER = 12
SHARDS_NAMED = 5  # damaged shards named in a pass's warning, at most
_CRC32C_POLY = 0x82F63B78  # Castagnoli, reflected


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_CRC32C_POLY if crc & 1 else 0)
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def masked_crc32c(data):
    """TFRecord's masked CRC-32C of `data` (used on 8-byte length headers only: pure Python)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


ShardLoss = collections.namedtuple("ShardLoss", ["shard", "records", "rest_bytes", "detail"])
ShardLoss.__doc__ = """What one pass lost of one shard: `records` whole records skipped (damaged
data, or the last one cut short), `rest_bytes` bytes at the end that could not be read at all (a
damaged length header; their record count is unknown; 0 if none), `detail` in words."""


class LostRecordCounter:
    """Records lost to damaged TFRecord shards: this pass (being read), the last finished pass,
    and all passes so far. Updated by the recovery step (Python, thread-safe), logged once per
    pass by `log_after_each_pass`."""

    def __init__(self, name):
        self.name = name
        self._lock = threading.Lock()
        self._this_pass = {}
        self.last_pass = {}  # shard -> ShardLoss, of the last finished pass
        self.total_records = 0  # records lost, all passes together
        self.total_rest_bytes = 0

    def add(self, loss):
        with self._lock:
            self._this_pass[loss.shard] = loss
            self.total_records += loss.records
            self.total_rest_bytes += loss.rest_bytes

    @property
    def lost_records(self):
        """Records known to be lost in the last finished pass (more if `rest_bytes` > 0)."""
        return sum(loss.records for loss in self.last_pass.values())

    @property
    def lost_rest_bytes(self):
        return sum(loss.rest_bytes for loss in self.last_pass.values())

    def describe(self, losses=None):
        """One sentence on `losses` (default: the last finished pass), naming a few shards."""
        losses = self.last_pass if losses is None else losses
        if not losses:
            return ""
        records = sum(loss.records for loss in losses.values())
        rest = sum(loss.rest_bytes for loss in losses.values())
        shown = [f"{shard} ({loss.detail})"
                 for shard, loss in sorted(losses.items())[:SHARDS_NAMED]]
        more = len(losses) - len(shown)
        return (f"{records} damaged record(s) skipped"
                + (f" and {rest} unreadable byte(s) at shard ends (records not countable)"
                   if rest else "")
                + f" in {len(losses)} damaged TFRecord shard(s): " + "; ".join(shown)
                + (f"; and {more} more shard(s)" if more else ""))

    def log(self):
        """Ends a pass: one warning if anything was lost; returns the records lost."""
        with self._lock:
            self.last_pass, self._this_pass = self._this_pass, {}
        if self.last_pass:
            logging.warning("%s: this pass lost data: %s. Regenerate those shards; the other "
                            "records were read.", self.name, self.describe())
        return self.lost_records

    def log_after_each_pass(self, dataset):
        """`dataset` followed by an empty tail whose only effect is to call `log()`."""
        return skipped_image_counter.call_after_each_pass(dataset, self.log)


def _random_reader(path):
    """TensorFlow's CRC-checking record reader at any offset (`read(offset)` -> (record, next
    offset), DataLossError on damage). Not exported under `tf.`; present since TF 2.4."""
    from tensorflow.python.lib.io import tf_record  # noqa: PLC0415

    return tf_record.tf_record_random_reader(path)


def read_past_damage(path, offset, size):
    """(good records after `offset`, ShardLoss) for a shard whose reader stopped at `offset`."""
    reader = _random_reader(path)
    good, skipped_at, rest, cut = [], [], 0, False
    position = offset
    with tf.io.gfile.GFile(path, "rb") as f:
        while position < size:
            try:
                record, next_position = reader.read(position)
                good.append(record)
                position = next_position
                continue
            except (tf.errors.DataLossError, IndexError):
                pass
            f.seek(position)
            header = f.read(_HEADER)
            length_ok = (len(header) == _HEADER and
                         masked_crc32c(header[:8]) == struct.unpack("<I", header[8:])[0])
            if not length_ok:
                rest = size - position
                break
            end = position + _HEADER + struct.unpack("<Q", header[:8])[0] + 4
            skipped_at.append(position)
            if end > size:
                cut = True
                break
            position = end
    details = []
    if skipped_at:
        details.append(f"{len(skipped_at)} record(s) skipped, at byte {skipped_at[0]}"
                       + (" ..." if len(skipped_at) > 1 else ""))
    if cut:
        details.append("the last record is cut short (truncated file)")
    if rest:
        details.append(f"damaged length header at byte {position}: the last {rest} byte(s) "
                       "are lost")
    return good, ShardLoss(path, len(skipped_at), rest, ", ".join(details))


def _recover(counter, shard, offset):
    """Py-function body at the end of each shard's read: nothing when the reader reached the end
    of the file; otherwise the records after the damage, with the loss counted."""
    path = shard.numpy().decode("utf-8", "surrogateescape")
    offset = int(offset.numpy())
    try:
        size = tf.io.gfile.stat(path).length
        if offset >= size:
            return tf.constant([], tf.string)
        good, loss = read_past_damage(path, offset, size)
    except (tf.errors.OpError, OSError) as error:
        message = getattr(error, "message", None) or str(error)
        good, loss = [], ShardLoss(path, 0, 0, f"unreadable after byte {offset}: {message}")
    counter.add(loss)
    return tf.constant(good, tf.string, shape=[len(good)])


def _opens(shard):
    try:
        with tf.io.gfile.GFile(shard.numpy().decode("utf-8", "surrogateescape"), "rb") as f:
            f.read(1)
        return True
    except (tf.errors.OpError, OSError):
        return False


def shard_records(shard, counter, buffer_size=None):
    """Dataset of `{"serialized": record, "shard": shard}` for the records of one shard (`shard`:
    scalar string tensor), reading past damaged records as the framing allows, losses counted in
    `counter`."""
    # `ignore_errors` retries a file that cannot be opened forever: an unopenable shard is left
    # out here (checked once per shard and pass) and reported by the recovery step.
    readable = tf.py_function(_opens, [shard], tf.bool)
    readable.set_shape([])
    files = tf.boolean_mask(tf.reshape(shard, [1]), tf.reshape(readable, [1]))
    records = tf.data.TFRecordDataset(files, buffer_size=buffer_size).ignore_errors()
    end_marker = tf.data.Dataset.from_tensors((tf.constant(b""), tf.constant(True)))
    flagged = records.map(lambda serialized: (serialized, tf.constant(False))).concatenate(
        end_marker)

    def step(offset, element):
        serialized, is_end = element

        def rest_of_shard():
            rest = tf.py_function(lambda s, o: _recover(counter, s, o), [shard, offset],
                                  tf.string)
            rest.set_shape([None])
            return rest

        out = tf.cond(is_end, rest_of_shard, lambda: tf.reshape(serialized, [1]))
        size = tf.cast(tf.strings.length(serialized), tf.int64) + RECORD_OVERHEAD
        return offset + size, {"serialized": out, "shard": tf.fill(tf.shape(out), shard)}

    return flagged.scan(tf.constant(0, tf.int64), step).unbatch()
