"""simmlm: multimodal learning when modalities go missing at test time."""

__version__ = "0.1.0"
