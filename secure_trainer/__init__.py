"""secure_trainer: Kohya-compatible LoRA training and data-privacy libraries (knows nothing of containers)."""

__version__ = "0.1.0"
