"""GroPrompt: box-supervised referring video object segmentation with a frozen Segment Anything model."""

from groprompt import compat as _compat  # noqa: F401  (first: repairs torchvision before anything imports it)

__version__ = "0.1.0"
