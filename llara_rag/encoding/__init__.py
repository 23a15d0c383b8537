"""Texts to vectors: the prompts, the backbone and its adapter, the arithmetic, whitening, the encoder,
encoding on several devices, and the encoder as a LlamaIndex embedding."""
