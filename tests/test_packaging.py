"""What `pip install` and `./install.sh` give: bounds that match the code, extras that stay optional."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from llara_rag.errors import LLaRAError
from llara_rag.extras import MissingExtraError

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def project() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def requirements(lines: list[str]) -> dict[str, Requirement]:
    return {(req := Requirement(line)).name: req for line in lines}


def test_bounds_follow_the_apis_the_code_uses() -> None:
    core = requirements(project()["dependencies"])
    store = requirements(project()["optional-dependencies"]["store"])
    assert not core["torch"].specifier.contains("2.5.1") and core["torch"].specifier.contains("2.6.0")
    assert store["chromadb"].specifier.contains("1.5.9") and not store["chromadb"].specifier.contains("2.0.0")


def test_the_evaluation_stack_is_an_extra_and_embedding_never_imports_it() -> None:
    metadata = project()
    assert not {"pytrec-eval-terrier", "matplotlib"} & set(requirements(metadata["dependencies"]))
    assert {"pytrec-eval-terrier", "matplotlib"} <= set(
        requirements(metadata["optional-dependencies"]["eval"])
    )
    code = (
        "import sys, llara_rag.encoding.embedding, llara_rag.indexing.chroma_embedding, llara_rag.evaluation; "
        "print(sorted({'pytrec_eval', 'matplotlib'} & set(sys.modules)))"
    )
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"


@pytest.mark.parametrize("module", ["pytrec_eval", "matplotlib.figure"])
def test_a_missing_extra_is_named_in_one_line(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from llara_rag.evaluation import mean_scores, plot

    uses = {
        "pytrec_eval": lambda: mean_scores({"q": {"d": 1}}, {}),
        "matplotlib.figure": lambda: plot(None, "x"),
    }
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingExtraError) as raised:
        uses[module]()
    assert isinstance(raised.value, LLaRAError) and isinstance(raised.value, ModuleNotFoundError)
    assert str(raised.value) == (
        f"{module.partition('.')[0]} is not installed; `pip install 'llara-rag[eval]'` adds it."
    )


def test_collections_are_an_extra_the_embedding_path_never_imports() -> None:
    metadata = project()
    store = {"chromadb", "llama-index-vector-stores-chroma", "bm25s", "PyStemmer"}
    assert not store & set(requirements(metadata["dependencies"]))
    assert store <= set(requirements(metadata["optional-dependencies"]["store"]))
    code = "import sys, llara_rag.encoding.embedding; print(sorted({'chromadb', 'bm25s', 'Stemmer'} & set(sys.modules)))"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"


@pytest.mark.parametrize("module", ["chromadb", "bm25s"])
def test_a_command_without_the_store_extra_names_it(
    module: str, tmp_path: Path, tiny_backbone_dir: Path
) -> None:
    """In a fresh interpreter where ``module`` cannot be imported, as in an install without ``[store]``."""
    (tmp_path / "a.md").write_text("cats purr")
    code = (
        f"import sys; sys.modules[{module!r}] = None; from llara_rag.cli import main; "
        f"sys.exit(main(['index', {str(tmp_path)!r}, '--db', {str(tmp_path / 'db')!r}, "
        f"'--model', {str(tiny_backbone_dir)!r}]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, done.stderr[-2000:]
    name = module.partition(".")[0] if module != "llama_index.vector_stores.chroma" else "chromadb"
    assert done.stderr.strip().endswith(f"{name} is not installed; `pip install 'llara-rag[store]'` adds it.")


def test_the_service_is_an_extra_named_by_serve_when_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from llara_rag.cli import main

    metadata = project()
    assert not {"fastapi", "uvicorn"} & set(requirements(metadata["dependencies"]))
    assert {"fastapi", "uvicorn"} <= set(requirements(metadata["optional-dependencies"]["serve"]))
    monkeypatch.setitem(sys.modules, "fastapi", None)
    assert main(["serve", "--embeddings-only"]) == 2
    assert "`pip install 'llara-rag[serve]'` adds it" in capsys.readouterr().err


STUB_PIP = """#!/bin/sh
echo "$*" >> "$PIP_LOG"
case "$*" in *download.pytorch.org*) exit "$CPU_INDEX_STATUS";; esac
"""


def run_install(tmp_path: Path, *, torch_installed: bool, cpu_index_status: int) -> tuple[list[str], str]:
    """Runs install.sh with stub ``python`` and ``pip`` that record what it asks for, in a fake venv."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "pip").write_text(STUB_PIP)
    (bin_dir / "python").write_text(f"#!/bin/sh\nexit {0 if torch_installed else 1}\n")
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    log = tmp_path / "pip.log"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "VIRTUAL_ENV": str(bin_dir.parent),
        "PIP_LOG": str(log),
        "CPU_INDEX_STATUS": str(cpu_index_status),
    }
    done = subprocess.run(
        ["bash", str(ROOT / "install.sh")], check=False, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return log.read_text().splitlines(), done.stderr


def test_install_takes_cpu_torch_from_pytorch_cpu_index(tmp_path: Path) -> None:
    torch = str(requirements(project()["dependencies"])["torch"])
    calls, _ = run_install(tmp_path, torch_installed=False, cpu_index_status=0)
    torch_calls = [call for call in calls if torch in call.split()]
    assert len(torch_calls) == 1
    assert f"--index-url {CPU_INDEX}" in torch_calls[0] and "--retries 0" in torch_calls[0]
    assert any(".[store,eval,serve,ray,llms,int8,test,docs]" in call for call in calls)


def test_install_falls_back_to_the_configured_index_when_pytorch_is_unreachable(tmp_path: Path) -> None:
    torch = str(requirements(project()["dependencies"])["torch"])
    calls, stderr = run_install(tmp_path, torch_installed=False, cpu_index_status=1)
    torch_calls = [call for call in calls if torch in call.split()]
    assert CPU_INDEX in torch_calls[0] and torch_calls[1] == f"install --quiet {torch}"
    assert f"no torch from {CPU_INDEX}" in stderr


def test_install_keeps_an_installed_torch(tmp_path: Path) -> None:
    torch = str(requirements(project()["dependencies"])["torch"])
    calls, _ = run_install(tmp_path, torch_installed=True, cpu_index_status=1)
    assert not [call for call in calls if torch in call.split()]


def test_the_old_adaptation_import_path_warns_and_gives_the_training_api() -> None:
    """Scripts written against the old path keep running for a release and are told where the API moved."""
    sys.modules.pop("llara_rag.adaptation", None)
    with pytest.warns(DeprecationWarning, match="llara_rag.training"):
        import llara_rag.adaptation as old

    import llara_rag.training as new

    assert (old.adapt, old.finetune, old.AdaptationArguments) == (
        new.adapt,
        new.finetune,
        new.AdaptationArguments,
    )
