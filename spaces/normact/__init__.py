"""Normalization-activation layers as computation graphs (EvoNorm); importing registers space "normact"."""

from spaces.normact.module import NormActLayer
from spaces.normact.space import NormActSpace

__all__ = ["NormActLayer", "NormActSpace"]
