"""ARC-AGI: the builder (build.py), the evaluator of pass@K and submissions (evaluator.py, `evaluators=[{name:
arc@ARC}]`) and the codec (codec.py)."""
from tasks.arc.codec import ArcCodec as CODEC

__all__ = ["CODEC"]
