"""A user's own task for LayerForge: its dataset and model live in ``task``, which a study config imports."""
