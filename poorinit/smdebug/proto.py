"""The protobuf messages of SageMaker Debugger's event files, built with protobuf's runtime.

smdebug writes TensorBoard ``Event`` messages in its own proto package
``smdebug`` (awslabs/sagemaker-debugger, ``smdebug/core/tfevent/proto/*.proto``).
The descriptors below are those definitions, field for field (same names,
numbers, types and labels), cut to the messages and fields a tensor reader
needs. Fields left out (graph_def, log_message, images, histograms, ...) are
skipped by protobuf as unknown fields, exactly as a reader of an older schema
skips newer fields, so a cut schema decodes the full one correctly.

Building the descriptors at import time (instead of shipping protoc output)
keeps poorinit independent of the protoc version: generated ``_pb2`` modules
refuse protobuf runtimes older than the compiler that made them.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "smdebug"

_FD = descriptor_pb2.FieldDescriptorProto
FieldProto = Any  # descriptor_pb2.FieldDescriptorProto (generated: no static type)
_OPTIONAL, _REPEATED = _FD.LABEL_OPTIONAL, _FD.LABEL_REPEATED
_DOUBLE, _FLOAT, _INT64, _INT32, _BOOL = _FD.TYPE_DOUBLE, _FD.TYPE_FLOAT, _FD.TYPE_INT64, _FD.TYPE_INT32, _FD.TYPE_BOOL
_STRING, _BYTES, _MESSAGE, _ENUM = _FD.TYPE_STRING, _FD.TYPE_BYTES, _FD.TYPE_MESSAGE, _FD.TYPE_ENUM

# types.proto, enum DataType: the numeric types a tensor can hold.
DATA_TYPES = {
    "DT_INVALID": 0, "DT_FLOAT": 1, "DT_DOUBLE": 2, "DT_INT32": 3, "DT_UINT8": 4, "DT_INT16": 5, "DT_INT8": 6,
    "DT_STRING": 7, "DT_COMPLEX64": 8, "DT_INT64": 9, "DT_BOOL": 10, "DT_QINT8": 11, "DT_QUINT8": 12,
    "DT_QINT32": 13, "DT_BFLOAT16": 14, "DT_QINT16": 15, "DT_QUINT16": 16, "DT_UINT16": 17, "DT_COMPLEX128": 18,
    "DT_HALF": 19, "DT_RESOURCE": 20, "DT_VARIANT": 21, "DT_UINT32": 22, "DT_UINT64": 23,
}


def _field(name: str, number: int, kind: int, label: int = _OPTIONAL, type_name: str = "",
           oneof: int | None = None, packed: bool = False) -> FieldProto:
    field = _FD(name=name, number=number, type=kind, label=label)
    if type_name:
        field.type_name = f".{PACKAGE}.{type_name}"
    if oneof is not None:
        field.oneof_index = oneof
    if packed:
        field.options.packed = True
    return field


def _message(name: str, fields: list[FieldProto], oneofs: tuple[str, ...] = (),
             nested: tuple[descriptor_pb2.DescriptorProto, ...] = ()) -> descriptor_pb2.DescriptorProto:
    message = descriptor_pb2.DescriptorProto(name=name, field=fields, nested_type=list(nested))
    for oneof in oneofs:
        message.oneof_decl.add(name=oneof)
    return message


def _file() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(name="poorinit/smdebug_events.proto", package=PACKAGE, syntax="proto3")
    data_type = fd.enum_type.add(name="DataType")
    for name, number in DATA_TYPES.items():
        data_type.value.add(name=name, number=number)
    fd.message_type.extend([
        # tensor_shape.proto
        _message("TensorShapeProto", [
            _field("dim", 2, _MESSAGE, _REPEATED, "TensorShapeProto.Dim"),
            _field("unknown_rank", 3, _BOOL),
        ], nested=(_message("Dim", [_field("size", 1, _INT64), _field("name", 2, _STRING)]),)),
        # tensor.proto (resource_handle_val, 14, left out)
        _message("TensorProto", [
            _field("dtype", 1, _ENUM, type_name="DataType"),
            _field("tensor_shape", 2, _MESSAGE, type_name="TensorShapeProto"),
            _field("version_number", 3, _INT32),
            _field("tensor_content", 4, _BYTES),
            _field("half_val", 13, _INT32, _REPEATED, packed=True),
            _field("float_val", 5, _FLOAT, _REPEATED, packed=True),
            _field("double_val", 6, _DOUBLE, _REPEATED, packed=True),
            _field("int_val", 7, _INT32, _REPEATED, packed=True),
            _field("string_val", 8, _BYTES, _REPEATED),
            _field("scomplex_val", 9, _FLOAT, _REPEATED, packed=True),
            _field("int64_val", 10, _INT64, _REPEATED, packed=True),
            _field("bool_val", 11, _BOOL, _REPEATED, packed=True),
            _field("dcomplex_val", 12, _DOUBLE, _REPEATED, packed=True),
        ]),
        # summary.proto (Image, Audio, HistogramProto left out)
        _message("SummaryMetadata", [
            _field("plugin_data", 1, _MESSAGE, _REPEATED, "SummaryMetadata.PluginData"),
        ], nested=(_message("PluginData", [_field("plugin_name", 1, _STRING), _field("content", 2, _STRING)]),)),
        _message("Summary", [
            _field("value", 1, _MESSAGE, _REPEATED, "Summary.Value"),
        ], nested=(_message("Value", [
            _field("node_name", 7, _STRING),
            _field("tag", 1, _STRING),
            _field("metadata", 9, _MESSAGE, type_name="SummaryMetadata"),
            _field("simple_value", 2, _FLOAT, oneof=0),
            _field("obsolete_old_style_histogram", 3, _BYTES, oneof=0),
            _field("tensor", 8, _MESSAGE, type_name="TensorProto", oneof=0),
        ], oneofs=("value",)),)),
        # event.proto (graph_def, log_message, session_log, ... left out)
        _message("Event", [
            _field("wall_time", 1, _DOUBLE),
            _field("step", 2, _INT64),
            _field("file_version", 3, _STRING, oneof=0),
            _field("graph_def", 4, _BYTES, oneof=0),
            _field("summary", 5, _MESSAGE, type_name="Summary", oneof=0),
            _field("meta_graph_def", 9, _BYTES, oneof=0),
        ], oneofs=("what",)),
    ])
    return fd


def _classes() -> dict[str, Any]:
    # A private pool: the default pool may already hold smdebug's own
    # definitions (same full names) when smdebug is imported in this process.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file())
    found = {}
    for name in ("Event", "Summary", "TensorProto", "TensorShapeProto", "SummaryMetadata"):
        descriptor = pool.FindMessageTypeByName(f"{PACKAGE}.{name}")
        get_class = getattr(message_factory, "GetMessageClass", None)
        found[name] = (get_class(descriptor) if get_class is not None
                       else message_factory.MessageFactory(pool).GetPrototype(descriptor))
    return found


_CLASSES = _classes()
Event = _CLASSES["Event"]
Summary = _CLASSES["Summary"]
TensorProto = _CLASSES["TensorProto"]
TensorShapeProto = _CLASSES["TensorShapeProto"]
SummaryMetadata = _CLASSES["SummaryMetadata"]
