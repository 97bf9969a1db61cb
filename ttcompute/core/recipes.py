"""The shipped recipes: the YAML configs of every stage (demo, arithmetic, MATH) and the DeepSpeed and
accelerate files they name, installed with the package so that a pip user has them too.

A ``--config`` path that does not exist where the command runs, but names a recipe (``sample.yaml``,
``math/prm.yaml``, or the clone's spelling ``configs/math/prm.yaml``), reads the shipped recipe, and
says so in the log. ``ttc recipes`` lists them and copies them out to edit::

    ttc recipes                      # list, with what each is for
    ttc recipes show math/prm.yaml   # print one
    ttc recipes copy math --to my-recipes   # a folder, one file, or "all"; never overwrites
"""

from __future__ import annotations

import argparse
import functools
import logging
import shutil
import sys
from pathlib import Path, PurePosixPath

from ttcompute.core.errors import InputError

logger = logging.getLogger(__name__)

# The recipes are data files in the package (no Python there): `ttcompute/recipes/`.
PACKAGE_DIR = Path(__file__).resolve().parent.parent
RECIPES_DIR = PACKAGE_DIR / "recipes"
SUFFIXES = (".yaml", ".json")
# How a clone's docs and older commands spell a recipe's path: the repository's `configs/` folder is
# this package folder (a symlink), so `configs/math/prm.yaml` names the recipe `math/prm.yaml`.
CLONE_PREFIXES = ("configs/", "recipes/", "./configs/")
# The recipes name the shipped policies by their path in a clone.
SHIPPED_CHECKPOINTS = "ttcompute/checkpoints/"


def names() -> list[str]:
    """Every shipped recipe, as a path relative to the recipes folder (``"math/prm.yaml"``), sorted."""
    return sorted(
        p.relative_to(RECIPES_DIR).as_posix()
        for p in RECIPES_DIR.rglob("*")
        if p.is_file() and p.suffix in SUFFIXES
    )


def describe(name: str) -> str:
    """A recipe's first comment line (the command it is for), or its first key for a JSON file."""
    text = path(name).read_text()
    for line in text.splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def find(spelled: str | Path) -> Path | None:
    """The shipped recipe that ``spelled`` names, or None: ``math/prm.yaml``, ``math/prm``,
    ``configs/math/prm.yaml`` all name ``<package>/recipes/math/prm.yaml``."""
    text = PurePosixPath(str(spelled)).as_posix()
    for prefix in CLONE_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    known = set(names())
    for candidate in (text, f"{text}.yaml"):
        if candidate in known:
            return RECIPES_DIR / candidate
    return None


def shipped_path(value: str) -> Path | None:
    """What a clone-relative path in a recipe means where there is no clone: ``configs/...`` (a
    recipe, e.g. a DeepSpeed file) or ``ttcompute/checkpoints/<policy>`` (a shipped checkpoint) --
    the installed file or folder; None for any other value.

    >>> shipped_path("ttcompute/checkpoints/policy_small").name
    'policy_small'
    >>> shipped_path("runs/prm") is None
    True

    Only a file named in full is a recipe here: ``--output_dir configs/prm`` stays an output folder
    (``--config`` may leave out ``.yaml``; a value of another option may not).

    >>> shipped_path("configs/prm") is None, shipped_path("configs/prm.yaml").name
    (True, 'prm.yaml')
    """
    text = PurePosixPath(value).as_posix()
    if text.startswith(SHIPPED_CHECKPOINTS):
        candidate = PACKAGE_DIR / text[len("ttcompute/") :]
        return candidate if candidate.exists() else None
    if text.startswith(CLONE_PREFIXES) and text.endswith(SUFFIXES):
        return find(text)
    return None


def path(name: str) -> Path:
    """The shipped recipe ``name``; an :class:`InputError` listing them when there is none."""
    found = find(name)
    if found is None:
        raise InputError(f"{name}: no such recipe; `ttc recipes` lists them ({', '.join(names()[:6])}, ...)")
    return found


@functools.cache
def log_once(message: str) -> None:
    """Log a substitution once per process: the demo resolves the same recipes for every stage."""
    logger.info(message)


def resolve_config(spelled: str | Path) -> Path:
    """A config file path as given, where it exists; else the shipped recipe it names (logged).

    Raises:
        InputError: neither a file nor a recipe.
    """
    given = Path(spelled)
    if given.is_file():
        return given
    shipped = find(spelled)
    if shipped is not None:
        log_once(f"{spelled}: not here; using the shipped recipe {shipped}")
        return shipped
    raise InputError(
        f"{spelled}: no such config file, and no shipped recipe by that name (see `ttc recipes`)"
    )


def copy(selection: list[str], destination: str | Path) -> list[Path]:
    """Copy recipes into ``destination``, keeping their folders; ``"all"``, a folder (``"math"``) or a
    file each. Nothing is written if any target exists already or any name is unknown.

    Raises:
        InputError: an unknown name, or a file that would be overwritten.
    """
    known = names()
    chosen: list[str] = []
    for item in selection:
        item = item.rstrip("/")
        if item == "all":
            chosen += known
            continue
        folder = [n for n in known if n.startswith(f"{item}/")]
        if folder:
            chosen += folder
            continue
        found = find(item)
        if found is None:
            raise InputError(f"{item}: no such recipe or recipe folder; `ttc recipes` lists them")
        chosen.append(found.relative_to(RECIPES_DIR).as_posix())
    chosen = list(dict.fromkeys(chosen))
    destination = Path(destination)
    clashes = [destination / n for n in chosen if (destination / n).exists()]
    if clashes:
        raise InputError(f"{clashes[0]}: exists; not overwriting it (copy into another --to folder)")
    written = []
    for name in chosen:
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(RECIPES_DIR / name, target)
        written.append(target)
    return written


def main(argv: list[str]) -> int:
    """``ttc recipes [list | show NAME | copy NAME... --to DIR]``."""
    parser = argparse.ArgumentParser(
        prog="ttc recipes",
        description="The shipped recipes (stage configs). A --config that names one runs it without a copy.",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("list", help="every recipe with the command it is for (the default)")
    show = commands.add_parser("show", help="print a recipe")
    show.add_argument("name")
    where = commands.add_parser("path", help="print where a recipe is installed")
    where.add_argument("name")
    copier = commands.add_parser("copy", help="copy recipes out to edit them; never overwrites")
    copier.add_argument("names", nargs="+", help='recipes, folders ("math") or "all"')
    copier.add_argument("--to", default=".", help="destination folder (default: the current one)")
    args = parser.parse_args(argv)
    if args.command in (None, "list"):
        listed = names()
        width = max(len(n) for n in listed)
        for name in listed:
            print(f"{name:<{width}}  {describe(name)}".rstrip())
        print("\nrun one: ttc <stage> --config <name>; edit one: ttc recipes copy <name> --to DIR")
    elif args.command == "show":
        sys.stdout.write(path(args.name).read_text())
    elif args.command == "path":
        print(path(args.name))
    else:
        for target in copy(args.names, args.to):
            print(target)
    return 0
