"""Sources of encoded ImageNet-style images (paper A.6.2), one module each: tfds
`imagenet2012` (`tfds`), TFRecords in the Inception/slim layout (`tfrecords`), a folder of class
folders (`folders`); what they share and return is in `common`."""
from tf_pyramid.data.sources import common, folders, tfds, tfrecords
from tf_pyramid.data.sources.common import SPLITS, ImageRecords

SOURCES = {"imagenet2012": tfds.tfds_records, "tfrecord": tfrecords.tfrecord_records,
           "folder": folders.folder_records}

__all__ = ["SOURCES", "SPLITS", "ImageRecords", "common", "folders", "tfds", "tfrecords"]
