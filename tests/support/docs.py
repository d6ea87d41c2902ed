"""The docs' pages and code blocks, and the CLI as a user runs it, for tests that check the docs against the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PYTHON_GUIDE = DOCS / "getting-started" / "python.md"  # the quick start the e2e tests run as written
RAW_SQS_GUIDE = DOCS / "getting-started" / "raw-sqs.md"
DEPLOY_GUIDE = DOCS / "deploy" / "index.md"  # "What it costs": the price table


def doc_section(page: Path, title: str) -> str:
    """The text of one ``## `` section of a page, subsections included."""
    text = page.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def code_blocks(language: str, text: str | None = None) -> list[str]:
    """The ``language`` code blocks of ``text``; by default of docs/getting-started/python.md, the quick start."""
    return re.findall(rf"```{language}\n(.*?)```", PYTHON_GUIDE.read_text() if text is None else text, flags=re.DOTALL)


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=cwd,
        check=False,
    )
