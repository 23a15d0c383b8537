"""A real `llara-rag chat` session over the sample folder, driven through a pseudo-terminal and recorded.

Indexes ``examples/sample_docs`` with the default model (incremental: a second run embeds nothing),
then types a short conversation into ``llara-rag chat`` exactly as a user would — a question, a
follow-up, ``/sources``, ``/reset``, another question, Ctrl-D — and writes what the terminal showed, with
the seconds each answer took, to ``benchmarks/results/chat_transcript.md``.

    python benchmarks/chat_transcript.py [--db DIR] [--max-new-tokens 120]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pexpect

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SAMPLE_DOCS = ROOT / "examples" / "sample_docs"
SCRIPT = [
    "How quickly must a SEV1 page be acknowledged?",
    "And what happens if the primary does not acknowledge it?",
    "/sources",
    "/reset",
    "Can I deploy to production on a Friday?",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--db", default=str(Path(tempfile.gettempdir()) / "llara-rag-examples" / "transcript-db")
    )
    parser.add_argument("--max-new-tokens", type=int, default=120)
    args = parser.parse_args()

    cli = [sys.executable, "-m", "llara_rag.cli"]
    subprocess.run([*cli, "index", str(SAMPLE_DOCS), "--db", args.db], check=True)
    screen = io.StringIO()
    child = pexpect.spawn(
        sys.executable,
        [*cli[1:], "chat", "--db", args.db, "--max-new-tokens", str(args.max_new_tokens)],
        encoding="utf-8",
        timeout=600,
        dimensions=(50, 200),
    )
    child.logfile_read = screen
    timings = []
    child.expect_exact("you> ")
    for line in SCRIPT:
        child.sendline(line)
        started = time.perf_counter()
        if not line.startswith("/"):
            child.expect(r"\nSources: [^\n]*\n")
            timings.append((line, time.perf_counter() - started))
        child.expect_exact("you> ")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()

    transcript = screen.getvalue().replace("\r\n", "\n").replace("\r", "")
    lines = [
        "# A `llara-rag chat` session over `examples/sample_docs`",
        "",
        (
            f"`llara-rag chat --db DB --max-new-tokens {args.max_new_tokens}` (embedder: the packaged "
            "SmolLM2-135M-Instruct, CPU; answers quoted from the retrieved chunks, the default with the embedded "
            "generator), typed through a pseudo-terminal by `benchmarks/chat_transcript.py`; "
            f"exit status {child.exitstatus}. The typed lines appear after `you> `."
        ),
        "",
        "```text",
        transcript.strip(),
        "```",
        "",
        "| question | seconds to the end of the cited answer |",
        "|---|---:|",
        *(f"| {question} | {seconds:.1f} |" for question, seconds in timings),
        "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "chat_transcript.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
