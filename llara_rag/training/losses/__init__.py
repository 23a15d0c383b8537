"""The losses, each a module with its config: what a loss is to the trainer (``base``), LLaRA's EBAE/EBAR
(``llara``), cached InfoNCE (``info_nce``), and the special-token rows both train (``token_rows``)."""
