"""Time to first token and tokens per second of the local generator, on prompts the chat engine sends.

Each prompt is what one chat turn sends the generator: the system prompt, three sample-folder chunks as
context (~700 tokens in all) and a question. The answer is streamed through ``LocalGenerator`` (the
LlamaIndex interface the chat uses, chat template included) and timed from the call to the first
non-empty piece and to the last. Tokens are counted by re-tokenising the answer.

    python benchmarks/generation.py [--model smollm2] [--max-new-tokens 128] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from llama_index.core.llms import ChatMessage

from llara_rag.chat.engine import CONTEXT_PROMPT, DEFAULT_SYSTEM_PROMPT
from llara_rag.chat.generator import GeneratorConfig, LocalGenerator
from llara_rag.encoding.backbone import resolve_device

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SAMPLE_DOCS = ROOT / "examples" / "sample_docs"
TURNS = [
    ("How quickly must a SEV1 page be acknowledged?", ["on_call_policy.md", "incident_review_guide.md"]),
    ("Can I deploy to production on a Friday?", ["deployment_process.md", "on_call_policy.md"]),
    ("What is the hotel limit per night in London?", ["travel_policy.md", "expense_rules.md"]),
]


def turn_messages(question: str, files: list[str]) -> list[ChatMessage]:
    context = "\n\n".join((SAMPLE_DOCS / name).read_text(encoding="utf-8") for name in files)
    system = f"{DEFAULT_SYSTEM_PROMPT}\n\n{CONTEXT_PROMPT.format(context_str=context)}"
    return [ChatMessage(role="system", content=system), ChatMessage(role="user", content=question)]


def time_turn(generator: LocalGenerator, messages: list[ChatMessage]) -> dict[str, float | str]:
    tokenizer = generator.tokenizer
    start, cpu_start = time.perf_counter(), time.process_time()
    first = None
    text = ""
    for response in generator.stream_chat(messages):
        if first is None and response.delta:
            first = time.perf_counter() - start
        text += response.delta or ""
    total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    prompt_tokens = len(
        tokenizer(generator.messages_to_prompt(messages), add_special_tokens=False)["input_ids"]
    )
    return {
        "prompt_tokens": prompt_tokens,
        "answer_tokens": tokens,
        "ttft_s": first or total,
        "total_s": total,
        "decode_tokens_per_s": (tokens - 1) / (total - first) if first and tokens > 1 else 0.0,
        "end_to_end_tokens_per_s": tokens / total,
        "cpu_share": cpu / total / torch.get_num_threads(),
        "answer": text,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of each prompt, after one warm-up generation"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    generator = LocalGenerator(GeneratorConfig(model=args.model, max_new_tokens=args.max_new_tokens))
    load_s = time.perf_counter() - started
    load_before = os.getloadavg()[0]
    generator.complete("Say hello.")  # warm-up: first-call allocations are not what a chat turn costs
    runs = [
        {"question": question, "repeat": repeat, **time_turn(generator, turn_messages(question, files))}
        for question, files in TURNS
        for repeat in range(args.repeats)
    ]
    summary = {
        key: statistics.median(run[key] for run in runs)
        for key in (
            "prompt_tokens",
            "answer_tokens",
            "ttft_s",
            "decode_tokens_per_s",
            "end_to_end_tokens_per_s",
            "cpu_share",
        )
    }
    result = {
        "model": args.model,
        "max_new_tokens": args.max_new_tokens,
        "device": str(resolve_device(generator.config.device)),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "model_load_s": load_s,
        "median": summary,
        "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "generation.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    table = [
        (
            f"# Local generator speed: {args.model} on {result['device']} "
            f"({result['cpu_count']} cores, {result['torch_threads']} torch threads)"
        ),
        "",
        (
            f"Load average {load_before:.1f} before, {result['load_average_after']:.1f} after (other jobs shared "
            f"the machine). Model load {load_s:.1f} s. Medians over {len(runs)} runs. CPU share: the "
            "fraction of its threads' wall time the generator got a core; near 1 on an idle machine."
        ),
        "",
        "| prompt tokens | answer tokens | time to first token | decode tokens/s | end-to-end tokens/s | CPU share |",
        "|---:|---:|---:|---:|---:|---:|",
        (
            f"| {summary['prompt_tokens']:.0f} | {summary['answer_tokens']:.0f} | {summary['ttft_s']:.2f} s "
            f"| {summary['decode_tokens_per_s']:.1f} | {summary['end_to_end_tokens_per_s']:.1f} "
            f"| {summary['cpu_share']:.2f} |"
        ),
        "",
    ]
    (RESULTS / "generation.md").write_text("\n".join(table), encoding="utf-8")
    print("\n".join(table))


if __name__ == "__main__":
    main()
