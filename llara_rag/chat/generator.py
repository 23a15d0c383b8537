"""The local generator: an instruction-tuned causal LM behind LlamaIndex's ``LLM`` interface, offline.

The default is the SmolLM2-135M-Instruct the embedder is built from, loaded *raw* from the converted
folder (the encoder's copy has sixteen extra special-token rows and may carry an adapter). Prompts go
through the model's own chat template, and tokens stream from a generation thread that stops as soon
as the consumer stops reading or calls :meth:`LocalGenerator.cancel` (Ctrl-C in ``llara-rag chat``),
so an interrupted answer never keeps the CPU busy or delays the exit.

:func:`load_generator` also reaches real LLM servers through LlamaIndex's own integrations:
``openai:http://host:port/v1`` (``OpenAILike``: llama.cpp's server, vLLM, LM Studio, an OpenAI-compatible
API, ``llara-rag serve`` itself) and ``ollama:MODEL`` (``Ollama``, at ``$OLLAMA_HOST`` or its default port).
The key of an OpenAI-compatible endpoint comes from ``$LLARA_RAG_GENERATOR_API_KEY`` (else
``$OPENAI_API_KEY``), never from a flag, which ``ps`` would show. The endpoint is asked for its models
before the first question, so one that does not answer is named in one line.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from llara_rag.encoding.backbone import (
    DEFAULT_MODEL,
    Dtype,
    materialize,
    resolve_backbone,
    resolve_device,
    resolve_dtype,
)
from llara_rag.errors import GeneratorError, ModelNotFoundError
from llara_rag.extras import require

if TYPE_CHECKING:
    import torch
    from llama_index.core.llms import LLM
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

API_KEY_ENVS = ("LLARA_RAG_GENERATOR_API_KEY", "OPENAI_API_KEY")
"""Where the key of an ``openai:`` endpoint is read from, first found first."""
OLLAMA_HOST_ENV = "OLLAMA_HOST"
ENDPOINT_TIMEOUT_S = 120.0
LLMS_EXTRA = "llms"


class GeneratorConfig(BaseModel):
    """Which model writes the answers, and how."""

    model_config = ConfigDict(frozen=True)

    model: str = Field(
        default=DEFAULT_MODEL,
        description="The chat model that writes the answers: embedded alias, .gguf file, local folder or Hub "
        "id, or a server: openai:http://HOST:PORT/v1 (key from $LLARA_RAG_GENERATOR_API_KEY or "
        "$OPENAI_API_KEY) or ollama:MODEL (at $OLLAMA_HOST).",
        json_schema_extra={"flag": "--generator", "dest": "generator"},
    )
    endpoint_model: str | None = Field(
        default=None,
        description="The model an openai: endpoint runs (default: the first it lists).",
        json_schema_extra={"flag": "--generator-model"},
    )
    max_new_tokens: int = Field(
        default=256,
        gt=0,
        description="Longest answer, in tokens.",
        json_schema_extra={"flag": "--max-new-tokens"},
    )
    context_window: int = Field(
        default=4096, gt=0, description="Prompt plus answer tokens; capped at the model's own limit."
    )
    temperature: float = Field(
        default=0.0,
        ge=0.0,
        description="Sampling temperature of the answers; 0 decodes greedily: the same answer every time.",
        json_schema_extra={"flag": "--temperature"},
    )
    repetition_penalty: float = Field(default=1.1, ge=1.0, description="Small models loop without it.")
    device: str | None = Field(default=None, description="cuda, cpu, ...; None picks CUDA when present.")
    dtype: Dtype | None = Field(default=None, description="None: fp32 on CPU, bf16 on GPU.")

    @property
    def endpoint(self) -> tuple[str, str] | None:
        """``("openai", URL)`` or ``("ollama", MODEL)`` for a server; None for an in-process model."""
        kind, separator, target = self.model.partition(":")
        if separator and kind in ("openai", "ollama") and target:
            return kind, target
        return None


def load_generator(config: GeneratorConfig | None = None) -> LLM:
    """The LlamaIndex LLM ``config`` names: a :class:`LocalGenerator`, or a client of a server that was
    checked to answer (:class:`~llara_rag.errors.GeneratorError` in one line when it does not)."""
    config = config or GeneratorConfig()
    endpoint = config.endpoint
    if endpoint is None:
        return LocalGenerator(config)
    kind, target = endpoint
    return _openai_like(config, target) if kind == "openai" else _ollama(config, target)


def _openai_like(config: GeneratorConfig, url: str) -> LLM:
    openai = require("openai", LLMS_EXTRA)
    OpenAILike = require("llama_index.llms.openai_like", LLMS_EXTRA).OpenAILike
    key = next((os.environ[name] for name in API_KEY_ENVS if os.environ.get(name)), "none")
    client = openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=10.0)
    try:
        listed = [model.id for model in client.models.list()]
    except openai.AuthenticationError:
        raise GeneratorError(
            f"The generator endpoint {url} refused the API key; set ${API_KEY_ENVS[0]} to its key."
        ) from None
    except openai.APIError as error:
        raise GeneratorError(
            f"The generator endpoint {url} does not answer ({type(error).__name__}: {error}); start the "
            "server, or fix the URL in --generator openai:URL (e.g. http://localhost:8080/v1)."
        ) from None
    model = config.endpoint_model or next(iter(listed), None)
    if model is None:
        raise GeneratorError(f"The generator endpoint {url} lists no model; name one with --generator-model.")
    logger.info("Generating with %s at %s", model, url)
    return OpenAILike(
        model=model,
        api_base=url,
        api_key=key,
        is_chat_model=True,
        context_window=config.context_window,
        max_tokens=config.max_new_tokens,
        temperature=config.temperature,
        timeout=ENDPOINT_TIMEOUT_S,
        max_retries=0,
    )


def _ollama(config: GeneratorConfig, model: str) -> LLM:
    import httpx

    ollama = require("ollama", LLMS_EXTRA)
    Ollama = require("llama_index.llms.ollama", LLMS_EXTRA).Ollama
    host = os.environ.get(OLLAMA_HOST_ENV) or "http://localhost:11434"
    try:
        ollama.Client(host=host, timeout=10.0).show(model)
    except ollama.ResponseError as error:
        raise GeneratorError(
            f"Ollama at {host} has no model {model!r} ({error.error}); pull it with `ollama pull {model}`."
        ) from None
    except (ConnectionError, httpx.HTTPError):
        raise GeneratorError(
            f"Ollama does not answer at {host}; start it with `ollama serve`, or set ${OLLAMA_HOST_ENV}."
        ) from None
    logger.info("Generating with Ollama's %s at %s", model, host)
    return Ollama(
        model=model,
        base_url=host,
        context_window=config.context_window,
        temperature=config.temperature,
        request_timeout=ENDPOINT_TIMEOUT_S,
        additional_kwargs={"num_predict": config.max_new_tokens},
    )


def _render_chat(tokenizer: PreTrainedTokenizerBase, messages: Sequence[ChatMessage]) -> str:
    turns = [{"role": message.role.value, "content": message.content or ""} for message in messages]
    return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)


class _StopWhenSet:
    """A transformers stopping criterion that ends generation once ``event`` is set."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
        return self.event.is_set()


class LocalGenerator(CustomLLM):
    """A chat model run in-process with transformers: no server, no API key, no network.

    One generation at a time: :meth:`cancel` stops whichever is in flight.
    """

    config: GeneratorConfig = Field(default_factory=GeneratorConfig)

    _model: PreTrainedModel = PrivateAttr()
    _tokenizer: PreTrainedTokenizerBase = PrivateAttr()
    _cancelled: threading.Event = PrivateAttr(default_factory=threading.Event)

    def __init__(self, config: GeneratorConfig | None = None, **kwargs: Any) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        config = config or GeneratorConfig()
        path = materialize(resolve_backbone(config.model))
        device = resolve_device(config.device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(config.dtype, device))
        except OSError as error:
            raise ModelNotFoundError(
                f"Could not load the generator {config.model!r}: {error}. Offline, pass a local folder, a .gguf "
                f"file or the embedded default {DEFAULT_MODEL!r}."
            ) from error
        if not tokenizer.chat_template:
            raise GeneratorError(
                f"{config.model!r} has no chat template, so it is not an instruction-tuned chat model; "
                f"pass one that is (the default {DEFAULT_MODEL!r} is)."
            )
        super().__init__(
            config=config,
            messages_to_prompt=lambda messages: _render_chat(tokenizer, messages),
            completion_to_prompt=lambda text: _render_chat(
                tokenizer, [ChatMessage(role="user", content=text)]
            ),
            **kwargs,
        )
        self._tokenizer = tokenizer
        self._model = model.to(device).eval()
        window = self.metadata.context_window
        if config.max_new_tokens > window // 2:
            raise GeneratorError(
                f"max_new_tokens={config.max_new_tokens} leaves too little of {config.model!r}'s "
                f"{window}-token context window for the question and the retrieved excerpts; "
                f"use at most {window // 2}."
            )
        logger.info("Loaded generator %s on %s", config.model, device)

    @classmethod
    def class_name(cls) -> str:
        return "LLaRALocalGenerator"

    @property
    def metadata(self) -> LLMMetadata:
        limit = getattr(self._model.config, "max_position_embeddings", None) or self.config.context_window
        return LLMMetadata(
            context_window=min(self.config.context_window, limit),
            num_output=self.config.max_new_tokens,
            is_chat_model=True,
            model_name=self.config.model,
        )

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The model's own tokenizer, for counting tokens the way the model does."""
        return self._tokenizer

    def cancel(self) -> None:
        """Stops the generation in flight after its current token; the stream then ends normally."""
        self._cancelled.set()

    def _generate_kwargs(self) -> dict[str, Any]:
        from transformers import StoppingCriteriaList

        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": self.config.temperature}
            if self.config.temperature > 0
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        )
        pad_id = self._tokenizer.pad_token_id
        return {
            **sampling,
            "repetition_penalty": self.config.repetition_penalty,
            "pad_token_id": pad_id if pad_id is not None else self._tokenizer.eos_token_id,
            "stopping_criteria": StoppingCriteriaList([_StopWhenSet(self._cancelled)]),
        }

    def _stream(self, prompt: str) -> Iterator[str]:
        """Yields the answer's text pieces as the generation thread decodes them."""
        from transformers import TextIteratorStreamer

        inputs = self._tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self._model.device)
        room = self.metadata.context_window - inputs["input_ids"].shape[1]
        if room <= 0:
            raise GeneratorError(
                f"The prompt is {inputs['input_ids'].shape[1]} tokens, more than the generator's context "
                f"window of {self.metadata.context_window}; retrieve fewer chunks or raise context_window."
            )
        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
        failures: list[Exception] = []

        def generate() -> None:
            try:
                self._model.generate(
                    **inputs,
                    streamer=streamer,
                    max_new_tokens=min(self.config.max_new_tokens, room),
                    **self._generate_kwargs(),
                )
            except Exception as error:  # noqa: BLE001 - handed to the consumer thread and re-raised there
                failures.append(error)
                streamer.end()

        self._cancelled.clear()
        worker = threading.Thread(target=generate, name="llara-rag-generate", daemon=True)
        worker.start()
        try:
            yield from (piece for piece in streamer if piece)
        finally:
            self._cancelled.set()
            worker.join()
        if failures:
            raise GeneratorError(f"Generation failed: {failures[0]}") from failures[0]

    def sample(self, conversations: Sequence[Sequence[ChatMessage]], samples: int) -> list[list[str]]:
        """``samples`` replies to each conversation, decoded as one left-padded batch, not streamed.

        For many short replies at once (the questions of generated training pairs): batching them is what
        makes a CPU usable, where :meth:`complete` writes one reply at a time.
        """
        import torch

        prompts = [_render_chat(self._tokenizer, conversation) for conversation in conversations]
        inputs = self._tokenizer(
            prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False
        ).to(self._model.device)
        width = inputs["input_ids"].shape[1]
        if width + self.config.max_new_tokens > self.metadata.context_window:
            raise GeneratorError(
                f"A prompt of {width} tokens leaves no room for {self.config.max_new_tokens} new tokens in the "
                f"generator's context window of {self.metadata.context_window}; give shorter texts."
            )
        drawn = samples if self.config.temperature > 0 else 1  # greedy: every sample is the same reply
        self._cancelled.clear()
        with torch.no_grad():
            output = self._model.generate(
                **self._shared_prompts(inputs, drawn),
                max_new_tokens=self.config.max_new_tokens,
                **self._generate_kwargs(),
            )
        texts = self._tokenizer.batch_decode(output[:, width:], skip_special_tokens=True)
        if drawn == 1:
            return [[text] * samples for text in texts]
        return [texts[index * samples : (index + 1) * samples] for index in range(len(prompts))]

    def _shared_prompts(self, inputs: Mapping[str, torch.Tensor], samples: int) -> dict[str, Any]:
        """``generate``'s inputs for ``samples`` replies a prompt, each prompt read once: its tokens but the last
        run through the model here and their cache repeated for every sample, where ``num_return_sequences``
        would read each prompt once per sample (most of a short reply's cost)."""
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        expanded = {"num_return_sequences": samples, **inputs}
        if samples == 1 or ids.shape[1] < 2 or self._model.generation_config.cache_implementation:
            return expanded  # nothing to share, or a cache generate must build itself
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: as generate numbers them
        cache = self._model(
            input_ids=ids[:, :-1],
            attention_mask=mask[:, :-1],
            position_ids=positions[:, :-1],
            use_cache=True,
            logits_to_keep=1,
        ).cache
        if cache is None:
            return expanded
        cache.batch_repeat_interleave(samples)
        return {
            "input_ids": ids.repeat_interleave(samples, dim=0),
            "attention_mask": mask.repeat_interleave(samples, dim=0),
            "cache": cache,
        }

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        text = "".join(self._stream(prompt if formatted else self.completion_to_prompt(prompt)))
        return CompletionResponse(text=text)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text = ""
        for delta in self._stream(prompt if formatted else self.completion_to_prompt(prompt)):
            text += delta
            yield CompletionResponse(text=text, delta=delta)
