"""Test helpers shared by the core and the separately installed integrations: a tiny random
backbone, a small document folder and a throw-away Chroma server.

They live in the package rather than in ``tests/conftest.py`` so that every adapter under
``integrations/`` can use them without copying this code or importing another test tree.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

WORDS = (
    "the a an of to in and is are was for on with as by at from that this it be or not which "
    "summarize above passage within eight words predict following query document text cats dogs "
    "purr bark when happy rust python systems programming language wing lift air pressure flow "
    "diabetes insulin stock market fell monday retrieval dense embedding model adapter search "
    "engine index chunk store vector question answer how what why does do can"
).split()
PUNCTUATION = list("\",.:;?!()-'")
PAIRS = [
    {"query": "why do cats purr", "pos": ["cats purr when happy"], "neg": ["dogs bark when happy"]},
    {
        "query": "what is rust",
        "pos": ["rust is a systems programming language"],
        "neg": ["python is a language"],
    },
    {
        "query": "how does a wing lift",
        "pos": ["wing lift air pressure flow"],
        "neg": ["the stock market fell"],
    },
    {"query": "what does insulin do", "pos": ["diabetes insulin"], "neg": ["a dense embedding model"]},
]
"""Labelled groups in the tiny backbone's vocabulary: a query, its positive and a negative."""


def build_tiny_backbone(
    path: Path,
    special_tokens: list[str] | None = None,
    seed: int = 0,
    hidden_size: int = 32,
    tie_embeddings: bool = True,
) -> Path:
    """Saves a 2-layer random LlamaForCausalLM and a word-level tokenizer to ``path``.

    ``special_tokens`` already present in the vocabulary (e.g. ``<s1>..<s16>`` in a scrambled order)
    mimic checkpoints such as BAAI/LLARA-passage whose tokenizer ships them.
    """
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab_list = ["<unk>", "<s>", "</s>", "<pad>", *WORDS, *PUNCTUATION, *(special_tokens or [])]
    vocab = {token: index for index, token in enumerate(vocab_list)}
    tokenizer_model = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer_model.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer_model,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )
    if special_tokens:
        tokenizer.add_tokens(special_tokens, special_tokens=True)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab_list),
        hidden_size=hidden_size,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
        tie_word_embeddings=tie_embeddings,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_random_adapter(backbone_dir: Path, target: Path, seed: int = 1) -> Path:
    """Saves a random LoRA adapter for the backbone at ``backbone_dir`` to ``target``, laid out as
    `llara-rag adapt` leaves it; another ``seed`` into the same folder stands for a re-run of `adapt`."""
    import torch
    from peft import LoraConfig, get_peft_model

    from llara_rag.encoding.adapter import AdapterInfo, write_adapter_info
    from llara_rag.encoding.backbone import load_backbone

    backbone = load_backbone(str(backbone_dir))
    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(backbone.network, config).save_pretrained(target)
    info = AdapterInfo(
        backbone=str(backbone_dir),
        backbone_identity=backbone.source.identity,
        special_token_ids=list(backbone.special_ids.all),
    )
    write_adapter_info(target, info)
    return target


def write_corpus(folder: Path, n_files: int = 6, seed: int = 0) -> Path:
    """``n_files`` text files of sentences in the tiny tokenizer's vocabulary, for ingestion tests."""
    import random

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(n_files):
        sentences = [" ".join(rng.choices(WORDS, k=12)) + "." for _ in range(rng.randint(5, 30))]
        (folder / f"doc{index}.txt").write_text(" ".join(sentences))
    return folder


@contextmanager
def chroma_server(path: Path, timeout: float = 60.0) -> Iterator[str]:
    """Runs ``chroma run`` on a free loopback port with its data in ``path``; yields its URL, stops it after.

    The ``chroma`` command comes with the chromadb package; it is looked for beside the running Python
    first, so a virtual environment works without being activated.
    """
    import shutil
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    beside = Path(sys.executable).with_name("chroma")
    command = str(beside) if beside.exists() else shutil.which("chroma")
    if command is None:
        raise FileNotFoundError("The `chroma` command is missing; it is installed with the chromadb package.")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    path.mkdir(parents=True, exist_ok=True)
    with (path / "chroma.log").open("wb") as log:
        server = subprocess.Popen(
            [command, "run", "--path", str(path / "data"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2):
                        break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"`chroma run` did not answer at {url}; see {path / 'chroma.log'}"
                        ) from None
                    time.sleep(0.2)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
