"""The control-plane TypedDicts name exactly the fields the core and the buffers return."""

import uuid

from mimocorb2._control_types import (
    BufferStats,
    CoreBufferStats,
    GroupBacklog,
    GroupStats,
    Registration,
)
from mimocorb2.mimo_buffer import BufferReader, BufferWriter, mimoBuffer


def _name(tag: str) -> str:
    return f"{tag}_{uuid.uuid4().hex[:8]}"


def test_buffer_stats_have_the_typed_fields():
    buf = mimoBuffer(_name("types"), 4, 2, {"x": "f4"})
    writer = BufferWriter(buf)
    with writer as (_, data):
        data["x"] = 1.0
    assert set(buf.core.stats()) == set(CoreBufferStats.__annotations__)
    stats = buf.get_stats()
    assert set(stats) == BufferStats.__required_keys__
    assert set(buf.core.registrations()[0]) == set(Registration.__annotations__)


def test_group_stats_have_the_typed_fields():
    buf = mimoBuffer(_name("typesg"), 4, 1, {"x": "i4"}, delivery="every_worker")
    BufferReader(buf, group="g")
    assert set(buf.core.groups()[0]) == set(GroupStats.__annotations__)
    groups = buf.get_stats()["groups"]
    assert set(groups["g"]) == set(GroupBacklog.__annotations__)
    assert set(buf.get_stats()) - BufferStats.__required_keys__ == {"groups"}
