"""Protobuf schema of dm_alchemy's data files, built in code (spec §6.4, §7).

Equivalent ``.proto`` (package ``alchemy``)::

    message IntArray { repeated int32 entries = 1; repeated int32 shape = 2; }
    message GraphArray { message Entry { repeated int32 edge_present = 1; }
                         repeated Entry entries = 1; repeated int32 shape = 2; }
    message Chemistry { int32 potion_map = 1; int32 stone_map = 2;
                        GraphArray.Entry graph = 3; repeated float rotation = 4; }
    message TrialItems { repeated int32 stones = 1; repeated int32 potions = 2; }
    message EpisodeItems { repeated TrialItems trial_items = 1; }
    message ChemistryAndItems { Chemistry chemistry = 1; EpisodeItems items = 2; }
    message ChemistriesAndItems { repeated ChemistryAndItems chemistries = 1; }
    message EpisodeEvents { repeated IntArray trial_events = 1; }
    message EvaluationSetEvents { repeated EpisodeEvents episode_events = 1; }

Building the descriptors at run time (instead of shipping ``protoc`` output)
keeps the package independent of the protobuf runtime's generated-code version.
"""

from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace

_PACKAGE = "alchemy"

# (message name, [(field name, number, type, label, message type name or None)])
_INT32, _FLOAT, _MESSAGE = "TYPE_INT32", "TYPE_FLOAT", "TYPE_MESSAGE"
_REPEATED, _OPTIONAL = "LABEL_REPEATED", "LABEL_OPTIONAL"
_SCHEMA = {
    "IntArray": [("entries", 1, _INT32, _REPEATED, None), ("shape", 2, _INT32, _REPEATED, None)],
    "GraphArray": [("entries", 1, _MESSAGE, _REPEATED, "GraphArray.Entry"), ("shape", 2, _INT32, _REPEATED, None)],
    "GraphArray.Entry": [("edge_present", 1, _INT32, _REPEATED, None)],
    "Chemistry": [
        ("potion_map", 1, _INT32, _OPTIONAL, None),
        ("stone_map", 2, _INT32, _OPTIONAL, None),
        ("graph", 3, _MESSAGE, _OPTIONAL, "GraphArray.Entry"),
        ("rotation", 4, _FLOAT, _REPEATED, None),
    ],
    "TrialItems": [("stones", 1, _INT32, _REPEATED, None), ("potions", 2, _INT32, _REPEATED, None)],
    "EpisodeItems": [("trial_items", 1, _MESSAGE, _REPEATED, "TrialItems")],
    "ChemistryAndItems": [
        ("chemistry", 1, _MESSAGE, _OPTIONAL, "Chemistry"),
        ("items", 2, _MESSAGE, _OPTIONAL, "EpisodeItems"),
    ],
    "ChemistriesAndItems": [("chemistries", 1, _MESSAGE, _REPEATED, "ChemistryAndItems")],
    "EpisodeEvents": [("trial_events", 1, _MESSAGE, _REPEATED, "IntArray")],
    "EvaluationSetEvents": [("episode_events", 1, _MESSAGE, _REPEATED, "EpisodeEvents")],
}


def _file_descriptor_proto():
    from google.protobuf import descriptor_pb2

    file_proto = descriptor_pb2.FileDescriptorProto(name="alchemy_gym/alchemy.proto", package=_PACKAGE, syntax="proto3")
    messages = {}
    for name in _SCHEMA:
        outer, _, inner = name.partition(".")
        if inner:
            messages[name] = messages[outer].nested_type.add(name=inner)
        else:
            messages[name] = file_proto.message_type.add(name=name)
    for name, fields in _SCHEMA.items():
        for field_name, number, ftype, label, type_name in fields:
            field = messages[name].field.add(
                name=field_name,
                number=number,
                type=descriptor_pb2.FieldDescriptorProto.Type.Value(ftype),
                label=descriptor_pb2.FieldDescriptorProto.Label.Value(label),
            )
            if type_name:
                field.type_name = f".{_PACKAGE}.{type_name}"
    return file_proto


@lru_cache(maxsize=1)
def messages() -> SimpleNamespace:
    """The message classes, by name (``messages().ChemistriesAndItems`` …)."""
    from google.protobuf import descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    file_desc = pool.Add(_file_descriptor_proto())
    if not hasattr(file_desc, "message_types_by_name"):  # older protobuf: Add returns None
        file_desc = pool.FindFileByName("alchemy_gym/alchemy.proto")
    classes = {}
    for name in _SCHEMA:
        descriptor = pool.FindMessageTypeByName(f"{_PACKAGE}.{name}")
        if hasattr(message_factory, "GetMessageClass"):
            cls = message_factory.GetMessageClass(descriptor)
        else:  # protobuf < 4.21
            cls = message_factory.MessageFactory(pool).GetPrototype(descriptor)
        classes[name.replace(".", "_")] = cls
    return SimpleNamespace(**classes)
