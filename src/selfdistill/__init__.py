"""selfdistill: on-policy self-distillation for reasoning language models."""
__version__ = "0.1.0"
