"""The local generator: streaming, chat templates, context limits, cancelling, and the real SmolLM2."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_index.core.llms import ChatMessage

from llara_rag.chat.generator import GeneratorConfig, LocalGenerator
from llara_rag.errors import GeneratorError


def test_generator_streams_what_complete_returns(tiny_generator: LocalGenerator) -> None:
    deltas = [
        response.delta for response in tiny_generator.stream_complete("how does the index store a chunk?")
    ]
    assert len(deltas) > 1 and all(deltas)
    assert "".join(deltas) == tiny_generator.complete("how does the index store a chunk?").text  # greedy
    assert tiny_generator.metadata.is_chat_model


def test_generator_formats_chats_with_the_model_template(tiny_generator: LocalGenerator) -> None:
    prompt = tiny_generator.messages_to_prompt([ChatMessage(role="user", content="what is a chunk?")])
    assert prompt == "<s> user : what is a chunk? </s> <s> answer : "
    assert tiny_generator.completion_to_prompt("what is a chunk?") == prompt


def test_generator_refuses_a_model_without_chat_template(tiny_backbone_dir: Path) -> None:
    with pytest.raises(GeneratorError, match="no chat template"):
        LocalGenerator(GeneratorConfig(model=str(tiny_backbone_dir)))


def test_prompt_beyond_the_context_window_is_a_clear_error(tiny_chat_model_dir: Path) -> None:
    generator = LocalGenerator(
        GeneratorConfig(model=str(tiny_chat_model_dir), context_window=16, max_new_tokens=8)
    )
    with pytest.raises(GeneratorError, match="context window of 16"):
        generator.complete("the index " * 20)


def test_an_answer_budget_that_crowds_out_the_context_is_refused(tiny_chat_model_dir: Path) -> None:
    with pytest.raises(GeneratorError, match="use at most 512"):  # the tiny model's window is 1024
        LocalGenerator(GeneratorConfig(model=str(tiny_chat_model_dir), max_new_tokens=1000))


def test_cancel_stops_the_generation_in_flight(tiny_chat_model_dir: Path) -> None:
    generator = LocalGenerator(GeneratorConfig(model=str(tiny_chat_model_dir), max_new_tokens=500))
    pieces = []
    for response in generator.stream_complete("what is a chunk?"):
        pieces.append(response.delta)
        generator.cancel()
    assert 0 < len(pieces) < 20


@pytest.mark.slow
def test_smollm2_generator_is_the_raw_chat_model_and_streams() -> None:
    generator = LocalGenerator(GeneratorConfig(max_new_tokens=48))
    assert "<s1>" not in generator.tokenizer.get_vocab()  # not the encoder's copy with <s1>..<s16>
    messages = [ChatMessage(role="user", content="Name three colours.")]
    assert generator.messages_to_prompt(messages).endswith("<|im_start|>assistant\n")
    pieces = [response.delta for response in generator.stream_chat(messages)]
    answer = "".join(pieces)
    assert len(pieces) > 3 and answer.strip()
    assert "<|im_" not in answer  # the template's markers are special tokens, never shown


def test_sample_writes_each_conversation_its_replies_in_one_batch(tiny_generator: LocalGenerator) -> None:
    conversations = [
        [ChatMessage(role="user", content="what is a chunk?")],
        [ChatMessage(role="user", content="how does the index store a vector and a chunk?")],
    ]
    replies = tiny_generator.sample(conversations, samples=3)
    assert [len(texts) for texts in replies] == [3, 3]
    greedy = tiny_generator.complete("what is a chunk?").text  # temperature 0: every sample is the greedy one
    assert replies[0] == [greedy] * 3, "left padding leaves the shorter prompt's reply unchanged"


def test_samples_read_each_prompt_once_and_draw_what_generate_would(tiny_chat_model_dir: Path) -> None:
    """The prompt's cache is shared by its samples: the replies are those ``num_return_sequences`` draws from
    the same seed, which reads every prompt once per sample."""
    import torch

    generator = LocalGenerator(
        GeneratorConfig(model=str(tiny_chat_model_dir), max_new_tokens=10, temperature=1.0)
    )
    conversations = [
        [ChatMessage(role="user", content="what is a chunk?")],
        [ChatMessage(role="user", content="how does the index store a vector and a chunk?")],
    ]
    shapes: list[tuple[int, int]] = []
    hook = generator._model.register_forward_pre_hook(
        lambda _module, _args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    torch.manual_seed(0)
    replies = generator.sample(conversations, samples=3)
    hook.remove()
    assert all(rows == 2 for rows, tokens in shapes if tokens > 1), f"a prompt read per sample: {shapes}"
    tokenizer = generator.tokenizer
    prompts = [generator.messages_to_prompt(conversation) for conversation in conversations]
    inputs = tokenizer(
        prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False
    )
    torch.manual_seed(0)
    output = generator._model.generate(
        **inputs, max_new_tokens=10, num_return_sequences=3, **generator._generate_kwargs()
    )
    expected = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert [reply for replies_of in replies for reply in replies_of] == expected
    assert len(set(expected)) > 1, "sampled, not greedy"
