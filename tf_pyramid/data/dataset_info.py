"""What the model and the trainer need to know about a dataset built by `build_dataset`."""
import dataclasses
from typing import List, Optional

from tf_pyramid.data.input_convention import InputConvention
from tf_pyramid.data.skipped_image_counter import SkippedImageCounter
from tf_pyramid.data.tfrecord_shards import LostRecordCounter


@dataclasses.dataclass
class DatasetInfo:
    """num_classes sizes the model; num_examples (whole split, before any per-worker sharding;
    None when unknown without reading everything, as for TFRecords) sizes epochs;
    input_convention (size, channels, value range, evaluation resize) is saved with the model."""

    num_classes: int
    num_examples: Optional[int]
    class_names: Optional[List[str]]
    input_convention: InputConvention
    skipped_images: Optional[SkippedImageCounter] = None  # ImageNet-style sources only
    # Records lost to damaged TFRecord shards (tfrecord_shards.LostRecordCounter); TFRecords only.
    lost_records: Optional[LostRecordCounter] = None
    split: Optional[str] = None  # "<dataset>/<split>", for messages

    @property
    def channels(self):
        return self.input_convention.channels
