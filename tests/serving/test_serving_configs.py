"""The TF Serving configuration files docs/serving.md gives, parsed against TF Serving's messages, so
that the docs cannot drift into files the server refuses."""
import os
import re

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf import wrappers_pb2  # noqa: F401  (registers Int64Value in the pool)

from tf_pyramid.serving import warmup

model_server_config_pb2 = pytest.importorskip(
    "tensorflow_serving.config.model_server_config_pb2",
    reason="tensorflow-serving-api (the `test` extra) has TF Serving's config messages")

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "serving.md")


def _batching_parameters_class():
    """TF Serving's `BatchingParameters` (session_bundle_config.proto), which the
    tensorflow-serving-api wheel does not ship: the fields the docs use, with TF Serving's
    field numbers and types (wrapped int64s, a repeated int64, a bool)."""
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="tf_pyramid_test/session_bundle_config.proto", package="tensorflow.serving",
        syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    message = file_proto.message_type.add(name="BatchingParameters")
    field = descriptor_pb2.FieldDescriptorProto
    for number, name in enumerate(["max_batch_size", "batch_timeout_micros",
                                   "max_enqueued_batches", "num_batch_threads"], start=1):
        message.field.add(name=name, number=number, type=field.TYPE_MESSAGE,
                          type_name=".google.protobuf.Int64Value", label=field.LABEL_OPTIONAL)
    message.field.add(name="thread_pool_name", number=5, type=field.TYPE_MESSAGE,
                      type_name=".google.protobuf.StringValue", label=field.LABEL_OPTIONAL)
    message.field.add(name="allowed_batch_sizes", number=6, type=field.TYPE_INT64,
                      label=field.LABEL_REPEATED)
    message.field.add(name="pad_variable_length_inputs", number=7, type=field.TYPE_BOOL,
                      label=field.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(descriptor_pb2.FileDescriptorProto.FromString(
        wrappers_pb2.DESCRIPTOR.serialized_pb).SerializeToString())
    pool.Add(file_proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


def _blocks():
    """{first-line comment: text} of the ```textproto blocks in docs/serving.md."""
    text = open(DOCS).read()
    blocks = re.findall(r"```textproto\n(.*?)```", text, flags=re.S)
    return {block.splitlines()[0].lstrip("# ").strip(): block for block in blocks}


def test_batching_parameters_parse_and_are_consistent():
    blocks = {k: v for k, v in _blocks().items() if k.startswith("batching_parameters.txt")}
    assert sorted(blocks) == ["batching_parameters.txt (CPU)", "batching_parameters.txt (GPU)"]
    batching_parameters = _batching_parameters_class()
    for name, block in blocks.items():
        params = text_format.Parse(block, batching_parameters())
        sizes = list(params.allowed_batch_sizes)
        # TF Serving's own rules for allowed_batch_sizes.
        assert sizes == sorted(set(sizes)) and sizes[-1] == params.max_batch_size.value, name
        assert params.batch_timeout_micros.value > 0 and params.num_batch_threads.value >= 1
        # Zero-padding images would change their answers.
        assert not params.pad_variable_length_inputs, name
        # The export's warm-up requests fit in one batch.
        assert max(warmup.WARMUP_BATCH_SIZES) <= params.max_batch_size.value, name


def test_models_config_parses_and_names_the_exported_model():
    config = text_format.Parse(_blocks()["models.config"],
                               model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert model.name == "pyramid" and model.model_platform == "tensorflow"
    assert model.base_path == "/models/pyramid"
    assert model.model_version_policy.WhichOneof("policy_choice") == "latest"


def test_the_docs_block_check_catches_a_wrong_field():
    with pytest.raises(text_format.ParseError, match="max_batch"):
        text_format.Parse("max_batch { value: 8 }", _batching_parameters_class()())
