"""simmlm: multimodal learning when modalities go missing at test time."""

from simmlm.portable import apply_environment

apply_environment()  # portable mode's CPU code paths must be chosen before torch and numpy are imported

__version__ = "0.1.0"
