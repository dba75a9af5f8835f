"""What the model and the trainer need to know about a dataset built by `build_dataset`."""
import dataclasses
from typing import List, Optional, Tuple

from tf_pyramid.data.skipped_image_counter import SkippedImageCounter


@dataclasses.dataclass
class DatasetInfo:
    """num_classes and channels size the model; num_examples (whole split, before any per-worker
    sharding; None when unknown without reading everything, as for TFRecords) sizes epochs."""

    num_classes: int
    channels: int
    num_examples: Optional[int]
    class_names: Optional[List[str]]
    resolution: int
    value_range: Tuple[float, float]
    skipped_images: Optional[SkippedImageCounter] = None  # ImageNet-style sources only
