"""Keras callbacks."""
from tf_pyramid.callbacks.attention_images import AttentionImages

__all__ = ["AttentionImages"]
