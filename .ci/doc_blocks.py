"""Print the runnable code blocks of one section of a Markdown page, in order (CI runs the docs'
quickstart with them from outside the clone). A block whose info string has ``skip`` is not runnable.

    python .ci/doc_blocks.py docs/quickstart.md "A trained PRM in Python" python
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.M | re.S)


def section(text: str, heading: str) -> str:
    """The text under ``## heading`` up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(heading)}\s*$", text, re.M)
    if match is None:
        raise SystemExit(f"no heading {heading!r}")
    level = len(match.group(1))
    rest = text[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[: end.start()] if end else rest


def main() -> None:
    page, heading, language = sys.argv[1:4]
    blocks = [
        body
        for lang, info, body in FENCE.findall(section(Path(page).read_text(), heading))
        if lang == language and "skip" not in info.split("#")[0].split()
    ]
    if not blocks:
        raise SystemExit(f"{page}: no runnable {language} block under {heading!r}")
    sys.stdout.write("\n".join(blocks))


if __name__ == "__main__":
    main()
