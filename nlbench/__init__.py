"""nlbench: non-local neural networks, benchmarked and ablated."""
from nlbench.ops import NonLocalBlock

__version__ = "0.1.0"
__all__ = ["NonLocalBlock", "__version__"]
