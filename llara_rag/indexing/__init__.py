"""Documents into a pinned Chroma collection and the BM25 index beside it, here or on Ray workers;
and the encoder as a Chroma embedding function pinned like a collection."""
