"""The README and the docs site: every code block that runs on a CPU runs, the site builds with
``--strict``, the CLI reference is generated from the config dataclasses, the README stays short and its
links work on PyPI.

Code-block convention (docs/development.md, "The docs"): fenced ``python`` and ``bash`` blocks run, the
blocks of one page in order in one temporary directory (bash with this interpreter's ``bin`` first on
``PATH`` and ``HF_HUB_OFFLINE=1``; Python in one namespace per page, in this process). The fence's info
string may say otherwise: ```` ```bash slow  # why ```` runs only under ``-m slow``, ```` ```bash skip  # why ````
never (a GPU, the Hub, the network, or illustrative); the reason is required. Other languages never run.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
RUNNABLE = ("python", "bash")
MARKERS = ("skip", "slow")
# Pages whose unmarked blocks are too slow for `make test`, until the page marks them `slow` itself.
SLOW_PAGES = {"docs/quickstart.md": "trains a PRM, searches and runs four stages: minutes on 2 CPU cores"}
# CommonMark: a backtick fence's info string holds no backtick (so a reason must not quote code).
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


@dataclass
class Block:
    page: str  # relative to the repo
    line: int  # of the opening fence, 1-based
    lang: str
    marker: str  # "run" | "slow" | "skip"
    reason: str
    info: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def doc_pages() -> list[Path]:
    return [REPO / "README.md", *sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.parts)]


def code_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with its test marker."""
    blocks, lines, i = [], path.read_text().splitlines(), 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, info = match["indent"], match["fence"], match["info"].strip()
        body, j = [], i + 1
        while j < len(lines) and not re.match(
            rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", lines[j]
        ):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        lang, _, rest = info.partition(" ")
        rest = rest.strip()
        marker, _, reason = rest.partition("#")
        marker = marker.strip() or "run"
        blocks.append(
            Block(_relative(path), i + 1, lang, marker, reason.strip(), info, "\n".join(body) + "\n")
        )
        i = j + 1
    return blocks


def _relative(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def runnable_blocks(path: Path, include_slow: bool) -> list[Block]:
    wanted = ("run", "slow") if include_slow else ("run",)
    return [b for b in code_blocks(path) if b.lang in RUNNABLE and b.marker in wanted]


def run_blocks(blocks: list[Block], workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(HF_HUB_OFFLINE="1", WANDB_MODE="offline", TOKENIZERS_PARALLELISM="false")
    namespace: dict = {"__name__": "__docs__"}
    monkeypatch.chdir(workdir)
    for block in blocks:
        start = time.perf_counter()
        if block.lang == "bash":
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block.code],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, (
                f"{block.where}: the bash block exited {done.returncode}\n{block.code}\n"
                f"--- output (tail) ---\n{(done.stdout + done.stderr)[-4000:]}"
            )
        else:
            try:
                exec(compile(block.code, block.where, "exec"), namespace)
            except Exception as error:
                raise AssertionError(
                    f"{block.where}: the python block raised {error!r}\n{block.code}"
                ) from error
        print(f"{block.where}: {block.lang} block ran in {time.perf_counter() - start:.1f} s")


def pages_with(include_slow: bool) -> list[Path]:
    return [p for p in doc_pages() if runnable_blocks(p, include_slow)]


def has_slow_blocks(path: Path) -> bool:
    return page_id(path) in SLOW_PAGES or any(b.marker == "slow" for b in code_blocks(path))


def page_id(path: Path) -> str:
    return str(path.relative_to(REPO))


# -- the code blocks ------------------------------------------------------------------------------


def test_every_runnable_language_block_says_whether_it_runs():
    bad = []
    for page in doc_pages():
        for block in code_blocks(page):
            if block.lang in RUNNABLE and block.marker != "run":
                if block.marker not in MARKERS:
                    bad.append(f"{block.where}: unknown marker {block.marker!r} in {block.info!r}")
                elif not block.reason:
                    bad.append(
                        f"{block.where}: '{block.marker}' needs a reason ('{block.lang} {block.marker}  # why')"
                    )
            if not block.lang and block.code.strip():
                bad.append(f"{block.where}: a fence without a language (say text, yaml, bash ...)")
    assert not bad, "\n".join(bad)


def test_the_block_parser_on_a_hand_written_page(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\nttc --version\n```\n\n- item\n\n  ```python slow  # trains\n  x = 1\n  ```\n\n"
        "```bash skip  # needs a GPU\nnvidia-smi\n```\n\n```text\nnot code\n```\n"
    )
    blocks = code_blocks(page)
    assert [(b.lang, b.marker, b.reason) for b in blocks] == [
        ("bash", "run", ""),
        ("python", "slow", "trains"),
        ("bash", "skip", "needs a GPU"),
        ("text", "run", ""),
    ]
    assert blocks[1].code == "x = 1\n"  # the list item's indent is gone


@pytest.mark.parametrize(
    "page", [p for p in pages_with(include_slow=False) if page_id(p) not in SLOW_PAGES], ids=page_id
)
def test_page_code_blocks_run(page, tmp_path, monkeypatch):
    run_blocks(runnable_blocks(page, include_slow=False), tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize(
    "page", [p for p in pages_with(include_slow=True) if has_slow_blocks(p)], ids=page_id
)
def test_page_code_blocks_run_with_the_slow_ones(page, tmp_path, monkeypatch):
    run_blocks(runnable_blocks(page, include_slow=True), tmp_path, monkeypatch)


# -- the site -------------------------------------------------------------------------------------


def load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks" / "docs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mkdocs_config() -> dict:
    # mkdocs.yml uses no Python tags, so plain YAML reads it.
    return yaml.safe_load((REPO / "mkdocs.yml").read_text())


def nav_pages(nav) -> list[str]:
    pages = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_every_page_is_in_the_nav_and_every_nav_entry_exists():
    nav = nav_pages(mkdocs_config()["nav"])
    generated = {load_hooks().CLI_PAGE}
    on_disk = {str(p.relative_to(DOCS)) for p in doc_pages() if p.is_relative_to(DOCS)}
    assert sorted(set(nav) - on_disk - generated) == []
    assert sorted(on_disk - set(nav)) == []
    assert len(nav) == len(set(nav))


def test_the_cli_reference_covers_every_stage_and_option():
    from ttcompute.cli import STAGES

    hooks = load_hooks()
    page = hooks.cli_reference_markdown()
    for stage, (_, specs, _) in STAGES.items():
        assert f"## `ttc {stage}`" in page
        for module, name in specs:
            cls = getattr(importlib.import_module(module), name)
            base = hooks._library_base(cls)
            inherited = {f.name for f in dataclasses.fields(base)} if base else set()
            for field in dataclasses.fields(cls):
                if field.name not in inherited:
                    assert f"`--{field.name}`" in page, f"{stage}: --{field.name} missing"
    # Defaults are escaped, not rendered: the step separator shows as "\n\n".
    assert '**`--step_separator`** (`str`, default `"\\n\\n"`)' in page
    assert "TrainingArguments](https://huggingface.co/docs/transformers/" in page


def test_test_markers_are_dropped_before_rendering():
    hooks = load_hooks()
    page = "```bash skip  # needs a GPU\nx\n```\n  ```python slow  # long\n  y\n  ```\n```text\nz\n```\n"
    assert hooks.strip_fence_markers(page) == "```bash\nx\n```\n  ```python\n  y\n  ```\n```text\nz\n```\n"


@pytest.mark.slow  # ~20 s: imports every stage's config and renders the API reference
def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra: pip install -e '.[docs]' (make docs)")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").is_file()


# -- the README -----------------------------------------------------------------------------------


def test_the_readme_is_at_most_150_lines():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move the rest into docs/"


def test_the_readme_links_work_on_pypi():
    """README.md is the PyPI long description: relative links break there. Every link is absolute, and
    one into the docs site or the repository names a page or file that exists."""
    config = mkdocs_config()
    site, repo = config["site_url"].rstrip("/") + "/", config["repo_url"].rstrip("/") + "/blob/main/"
    text = (REPO / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"<(https?://[^>]+)>", text)
    assert targets
    generated = load_hooks().CLI_PAGE.removesuffix(".md")
    bad = []
    for target in targets:
        if not target.startswith(("https://", "http://")):
            bad.append(f"{target}: relative (breaks on PyPI)")
        elif target.startswith(site):
            page = target[len(site) :].split("#")[0].rstrip("/")
            if page and page != generated and not (DOCS / f"{page}.md").is_file():
                bad.append(f"{target}: no docs/{page}.md")
        elif target.startswith(repo) and not (REPO / target[len(repo) :]).exists():
            bad.append(f"{target}: no such file in the repository")
    assert not bad, "\n".join(bad)
