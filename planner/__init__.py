"""Tiling and memory-hierarchy planner for int8 Tiny Transformers on microcontrollers."""

__version__ = "0.1.0"
