"""Colour-rule tasks, the CPU-sized test of answering tasks never seen (tools/adapt.py): the builder (build.py) and
the codec (codec.py)."""
from tasks.rules.codec import RulesCodec as CODEC

__all__ = ["CODEC"]
