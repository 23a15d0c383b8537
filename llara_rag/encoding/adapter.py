"""The adapter directory: what the trainers write and the encoder loads.

An adapter directory holds a PEFT LoRA adapter (``adapter_model.safetensors``, ``adapter_config.json``),
the tokenizer, a model card (``README.md``), ``llara_config.json``, which records the backbone it was
trained on, so that loading it on another backbone is refused instead of silently producing noise, and
after the unsupervised stage the domain whitening (``whitening.safetensors``) its vectors go through.
:func:`push_adapter` publishes the directory as a Hugging Face Hub model repository.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from llara_rag.encoding.prompts import DEFAULT_PROMPTS, LLaRAPrompts
from llara_rag.encoding.whitening import WHITENING_FILE, Whitening
from llara_rag.errors import AdapterError, PublishError

if TYPE_CHECKING:
    from huggingface_hub import HfApi
    from peft import PeftModel

    from llara_rag.encoding.backbone import Backbone

logger = logging.getLogger(__name__)

LLARA_CONFIG_FILE = "llara_config.json"
PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")
DEFAULT_ADAPTER = Path(__file__).parents[1] / "default_adapter"
"""The retrieval-trained adapter shipped for the default backbone (``benchmarks/train_default.py`` made it)."""
DEFAULT_SUPERVISED_PAIRS = DEFAULT_ADAPTER / "supervised_pairs.jsonl.gz"
"""The labelled groups the default adapter's supervised stage trained on, shipped so ``adapt`` can replay
them after a corpus has moved the adapter (SciFact and SQuAD train questions; licenses in its model card)."""
DEFAULT = "default"
"""``adapter="default"``: the shipped adapter on the default backbone, no adapter on any other model."""
DEFAULT_UNSUPERVISED = "default-unsupervised"
"""``adapter="default-unsupervised"``: the shipped adapter's first, label-free stage (what its supervised
stage continued), on the default backbone: where ``adapt`` starts when it replays that supervised stage."""
SHIPPED = {DEFAULT: DEFAULT_ADAPTER, DEFAULT_UNSUPERVISED: DEFAULT_ADAPTER / "unsupervised"}
"""The adapters shipped in the package, by the name every record and option uses for them."""
NONE = "none"
"""``adapter="none"``: the bare backbone, its special-token rows untrained."""


def adapter_name(directory: str | None) -> str | None:
    """What a saved configuration records for a resolved adapter: a shipped one by name, so the record
    reads the same on every machine and install; any other by its path."""
    if directory is None:
        return None
    resolved = Path(directory).resolve()
    return next((name for name, path in SHIPPED.items() if path.resolve() == resolved), directory)


def resolve_adapter(adapter: str | None, *, default_backbone: bool) -> str | None:
    """The adapter directory ``adapter`` names, or None for the bare backbone (and for a shipped adapter's
    name on another backbone than the one it was trained for)."""
    if adapter is None or adapter.lower() == NONE:
        return None
    if adapter in SHIPPED:
        return str(SHIPPED[adapter]) if default_backbone else None
    return adapter


class TrainedLengths(BaseModel):
    """The most text tokens (prompts not counted) the adapter's last training stage read on each side."""

    query: int = Field(gt=0)
    passage: int = Field(gt=0)


class AdapterInfo(BaseModel):
    """The contents of ``llara_config.json``."""

    backbone: str = Field(description="The model name the adapter was trained on, as given to the trainer.")
    backbone_identity: str = Field(description="BackboneSource.identity of that model.")
    special_token_ids: list[int] = Field(description="Ids of <s1>..<s16> in the training tokenizer.")
    prompts: LLaRAPrompts = DEFAULT_PROMPTS
    pooling: str = "mean-special-8"
    lowercase: bool = Field(
        default=False, description="Texts were lower-cased before training, so they are served lower-cased."
    )
    stage: str = Field(default="adaptation", description="adaptation (EBAE+EBAR) or contrastive.")
    trained_lengths: TrainedLengths | None = Field(
        default=None, description="None for adapters written before the lengths were recorded."
    )
    training: dict[str, Any] = Field(default_factory=dict, description="A summary of the run.")


def require_adapter_files(directory: str | Path) -> Path:
    path = Path(directory)
    if not path.is_dir():
        raise AdapterError(
            f"Adapter directory {path} does not exist; pass the folder `llara-rag adapt` or `finetune` wrote, "
            f"'{DEFAULT}' (the shipped adapter) or '{NONE}' (the bare backbone)."
        )
    missing = [name for name in PEFT_FILES if not (path / name).is_file()]
    if missing:
        raise AdapterError(
            f"{path} is not a complete adapter (missing {', '.join(missing)}); pass the directory "
            "that `llara-rag adapt` or `llara-rag finetune` wrote."
        )
    return path


def _unreadable(path: Path, error: Exception) -> AdapterError:
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        first = error.errors()[0]
        reason = f"{'.'.join(map(str, first['loc'])) or 'content'}: {first['msg']}"
    else:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return AdapterError(
        f"{path} is unreadable ({reason[:200]}); restore it, or re-run the `llara-rag adapt`/`finetune` "
        "command that wrote the adapter."
    )


def check_adapter_files(directory: str | Path) -> Path:
    """Fails with the file's name when the PEFT config is not JSON or the weights are not whole safetensors.

    Checked before PEFT reads them: its own errors for a damaged file read like a backbone mismatch.
    """
    import json

    from safetensors import SafetensorError, safe_open

    path = require_adapter_files(directory)
    config = path / PEFT_FILES[0]
    try:
        parsed = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise _unreadable(config, error) from None
    if not isinstance(parsed, dict):
        raise _unreadable(config, TypeError("not a JSON object"))
    weights = path / PEFT_FILES[1]
    try:  # opening checks the header and that the file holds every byte it declares
        with safe_open(str(weights), framework="pt"):
            pass
    except (OSError, SafetensorError, ValueError) as error:
        raise _unreadable(weights, error) from None
    return path


def read_adapter_info(directory: str | Path) -> AdapterInfo | None:
    config = require_adapter_files(directory) / LLARA_CONFIG_FILE
    if not config.is_file():
        return None
    try:
        return AdapterInfo.model_validate_json(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:  # pydantic's ValidationError is a ValueError
        raise _unreadable(config, error) from None


def write_adapter_info(directory: str | Path, info: AdapterInfo) -> None:
    Path(directory, LLARA_CONFIG_FILE).write_text(info.model_dump_json(indent=2), encoding="utf-8")


def adapter_digest(directory: str | Path) -> str:
    """A hash of the adapter's weights, config and whitening: two adapters with equal digests embed alike."""
    path = require_adapter_files(directory)
    digest = hashlib.sha256()
    for name in PEFT_FILES:
        digest.update((path / name).read_bytes())
    if (path / WHITENING_FILE).is_file():
        digest.update((path / WHITENING_FILE).read_bytes())
    return digest.hexdigest()[:16]


class AdapterDirectory:
    """An adapter folder, each of its files read at most once: the encoder, its fingerprint and its
    whitening all take this, so loading an encoder reads ``llara_config.json``, digests the weights and
    loads the whitening once each (PEFT then reads its own two files to build the LoRA).

    Refused at once when the folder or its PEFT files are missing; each part is read when first asked for.
    """

    def __init__(self, directory: str | Path) -> None:
        self.path = require_adapter_files(directory)

    def __str__(self) -> str:
        return str(self.path)

    @cached_property
    def info(self) -> AdapterInfo | None:
        """Its ``llara_config.json``; None for an adapter written without one."""
        return read_adapter_info(self.path)

    @cached_property
    def digest(self) -> str:
        return adapter_digest(self.path)

    @cached_property
    def whitening(self) -> Whitening | None:
        return Whitening.load(self.path)


def check_adapter(backbone: Backbone, adapter: AdapterDirectory) -> AdapterInfo | None:
    """Checks the adapter's files and refuses it when its ``llara_config.json`` names another backbone."""
    check_adapter_files(adapter.path)
    info = adapter.info
    directory = adapter.path
    if info is None:
        logger.warning(
            "%s has no %s; assuming it matches %s", directory, LLARA_CONFIG_FILE, backbone.source.identity
        )
    else:
        if info.backbone_identity != backbone.source.identity:
            raise AdapterError(
                f"Adapter {directory} was trained on {info.backbone!r} ({info.backbone_identity}) but the "
                f"encoder loaded {backbone.source.identity}; pass model={info.backbone!r} with this adapter."
            )
        if list(backbone.special_ids.all) != info.special_token_ids:
            raise AdapterError(
                f"Adapter {directory} expects special-token ids {info.special_token_ids}, the loaded "
                f"tokenizer has {list(backbone.special_ids.all)}; the adapter and backbone do not match."
            )
    return info


@contextmanager
def peft_wrapping() -> Iterator[None]:
    """Wrapping a model in peft without its FutureWarning about transformers' ``is_gradient_checkpointing``:
    peft (through 0.21) reads that deprecated property on every wrap, so each load of an adapter would
    warn about code that is neither the user's nor ours."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        yield


def load_peft(backbone: Backbone, adapter: AdapterDirectory, *, trainable: bool = False) -> PeftModel:
    """The adapter's LoRA on the backbone, after its files and its recorded backbone are checked.

    A shape mismatch is reported in one line (PEFT lists every tensor), and names the missing
    ``llara_config.json`` when that is why the mismatch was not caught before loading.
    """
    from peft import PeftModel

    info = check_adapter(backbone, adapter)
    directory = adapter.path
    try:
        with peft_wrapping():
            return PeftModel.from_pretrained(backbone.network, str(directory), is_trainable=trainable)
    except (RuntimeError, ValueError, KeyError) as error:
        first = next((line.strip() for line in str(error).splitlines() if "size mismatch" in line), None)
        detail = first or (str(error).strip().splitlines() or [type(error).__name__])[0]
        unknown = (
            f" It has no {LLARA_CONFIG_FILE}, so the backbone it was trained on is unknown: pass that one as model."
            if info is None
            else ""
        )
        raise AdapterError(
            f"Adapter {directory} does not fit backbone {backbone.source.identity} ({detail[:200]}).{unknown}"
        ) from None


def apply_adapter(backbone: Backbone, adapter: AdapterDirectory) -> None:
    """Loads a LoRA adapter onto the backbone and merges it, so inference costs what the base costs.

    Both training stages write one LoRA relative to the base backbone (the contrastive stage keeps
    training the adaptation LoRA rather than stacking a second one), so one load serves either stage.
    """
    backbone.network = load_peft(backbone, adapter).merge_and_unload()
    backbone.network.eval()


CARD_TAGS = ["llara-rag", "llara", "llama2vec", "dense-retrieval", "lora"]


def _lengths_line(lengths: TrainedLengths | None) -> str:
    if lengths is None:
        return ""
    return (
        f"\nTrained on queries of up to {lengths.query} text tokens and passages of up to {lengths.passage}; "
        "served, texts are cut at the encoder's `query_max_length` and `passage_max_length` instead.\n"
    )


def write_model_card(directory: str | Path, info: AdapterInfo, description: str) -> None:
    """``README.md``: Hub metadata (``base_model`` a Hub id the Hub can link, when there is one), what the
    adapter is, how to load it, and how it was trained."""
    import json

    from huggingface_hub import ModelCard, ModelCardData

    from llara_rag.encoding.backbone import hub_id

    data = ModelCardData(
        library_name="peft",
        base_model=hub_id(info.backbone),
        pipeline_tag="feature-extraction",
        tags=CARD_TAGS,
    )
    body = f"""# llara-rag adapter ({info.stage})

{description}

Backbone `{info.backbone}` (`{info.backbone_identity}`), pooling `{info.pooling}`: the L2-normalised
mean of the final hidden states at `<s1>..<s8>` for passages and `<s9>..<s16>` for queries, then,
when this folder holds `whitening.safetensors`, the domain whitening fitted on the training documents.

```python
from llara_rag import LLaRAEncoder, LLaRAEmbedding

encoder = LLaRAEncoder(model={json.dumps(info.backbone)}, adapter="path/to/this/folder")
embed_model = LLaRAEmbedding(model_name={json.dumps(info.backbone)}, adapter="path/to/this/folder")  # LlamaIndex
# from the Hub: adapter=huggingface_hub.snapshot_download("OWNER/REPO")
```

Command line: `llara-rag embed --model {info.backbone} --adapter path/to/this/folder "some text"`.

## Prompts
- passage: `{info.prompts.prefix}TEXT{info.prompts.passage_suffix}<s1>..<s8>`
- query: `{info.prompts.prefix}TEXT{info.prompts.query_suffix}<s9>..<s16>`
{_lengths_line(info.trained_lengths)}
## Training
```json
{json.dumps(info.training, indent=2, default=str)}
```
"""
    ModelCard(f"---\n{data.to_yaml()}\n---\n{body}").save(Path(directory) / "README.md")


def push_adapter(
    directory: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    api: HfApi | None = None,
) -> str:
    """Uploads the adapter directory to the Hub model repository ``repo_id`` (created when missing).

    The directory is checked first (complete, readable, with its ``llara_config.json``), so nothing
    half-made is published. Returns the repository's URL. ``api`` defaults to ``HfApi(token=token)``.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    path = check_adapter_files(directory)
    if read_adapter_info(path) is None:
        raise AdapterError(
            f"{path} has no {LLARA_CONFIG_FILE}, so users of the pushed adapter could not tell its backbone; "
            "push a folder that `llara-rag adapt` or `finetune` wrote."
        )
    api = api or HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(
            folder_path=str(path),
            repo_id=repo_id,
            repo_type="model",
            commit_message="Upload llara-rag adapter",
            ignore_patterns=[".*", "checkpoint-*"],
        )
    except (HfHubHTTPError, OSError, ValueError) as error:  # requests' connection errors are OSErrors
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise PublishError(
            f"Cannot push {path} to the Hub repository {repo_id!r} ({reason}); check the network, the "
            "repository name (OWNER/NAME) and your token (`hf auth login`, or --token)."
        ) from None
    return str(url)
