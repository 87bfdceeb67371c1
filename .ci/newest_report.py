"""Which releases the "newest" CI world tested, against the newest ones its ranges allow.

    python .ci/newest_report.py [--strict] [--output FILE]

For each core package: the newest release on the package index (`pip index versions`) that every
declared range allows (setup.cfg's, and each installed package's own requirement on it, e.g.
transformers' on huggingface-hub), and the release installed in this environment. When one is
older than the newest allowed, it says so and asks pip why (`pip install --dry-run NAME==newest`
against what is installed: a dependency missing from the index, a yanked or absent wheel, a conflict
with another pin), so a world that quietly resolved to an older set is visible.

A shortfall is a warning (exit 0), or an error with `--strict`: upstream's release schedule (a
dependency published a day after the package that needs it) must not block this project's CI, and
a newcomer's `pip install` falls back the same way, so the older set is what users get too; but
it must be seen, so `.ci/run` prints this report as the last lines of its log.
"""

from __future__ import annotations

import argparse
import configparser
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

CORE = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "evaluate",
    "huggingface-hub",
    "gradio",
)
SETUP_CFG = Path(__file__).resolve().parent.parent / "setup.cfg"


def declared_requirements() -> list[Requirement]:
    """setup.cfg's install_requires and every extra's requirements."""
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    lines = config.get("options", "install_requires").splitlines()
    for extra in config.options("options.extras_require"):
        lines += config.get("options.extras_require", extra).splitlines()
    return [Requirement(line.strip()) for line in lines if line.strip()]


def installed_requirements() -> list[tuple[str, Requirement]]:
    """(dependent, requirement) for every requirement of every installed distribution that applies
    here (its environment marker holds, extras not requested)."""
    env = {**default_environment(), "extra": ""}
    found = []
    for dist in metadata.distributions():
        for line in dist.requires or []:
            try:
                requirement = Requirement(line)
            except ValueError:
                continue
            if requirement.marker is None or requirement.marker.evaluate(env):
                found.append((dist.metadata["Name"], requirement))
    return found


def allowed_ranges(name: str) -> list[tuple[str, SpecifierSet]]:
    """Every range on `name`: setup.cfg's first, then installed packages' (those that constrain)."""
    key = canonicalize_name(name)
    ranges = [("setup.cfg", r.specifier) for r in declared_requirements() if canonicalize_name(r.name) == key]
    ranges += [
        (dependent, r.specifier)
        for dependent, r in installed_requirements()
        if canonicalize_name(r.name) == key and str(r.specifier)
    ]
    return ranges


def index_versions(name: str) -> list[Version]:
    """Releases the package index lists for `name` (`pip index versions`)."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", name],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r"Available versions:\s*(.+)", result.stdout)
    if not match:
        raise RuntimeError(f"pip index versions {name}: {(result.stderr or result.stdout).strip()[-300:]}")
    versions = []
    for text in match.group(1).split(","):
        try:
            versions.append(Version(text.strip()))
        except InvalidVersion:
            continue
    return versions


def why_not(name: str, version: Version) -> str:
    """pip's own answer to installing `name==version` beside what is installed (dry run)."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", f"{name}=={version}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode == 0:
        return "pip can install it beside what is installed: this environment was resolved to an older set (pins, a conflict, a stale cache)"
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith("error")] or lines
    return " | ".join(errors[-2:])[:400]


def report(strict: bool = False) -> tuple[list[str], bool]:
    """The report's lines and whether every core package is at its newest allowed release."""
    lines = ["newest world: newest release the ranges allow vs the release tested"]
    shortfalls = []
    for name in CORE:
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            installed = None
        ranges = allowed_ranges(name)
        try:
            allowed = [
                v
                for v in index_versions(name)
                if all(v in spec for _, spec in ranges) and not v.is_prerelease
            ]
        except (RuntimeError, subprocess.TimeoutExpired) as err:
            lines.append(f"  {name:<16} newest allowed: UNKNOWN ({err})   tested: {installed}")
            shortfalls.append(name)
            continue
        newest = max(allowed) if allowed else None
        why = ", ".join(f"{spec} ({who})" for who, spec in ranges if str(spec)) or "no range"
        status = "ok" if installed is not None and newest is not None and installed >= newest else "OLDER"
        lines.append(f"  {name:<16} newest allowed: {newest}   tested: {installed}   {status}   [{why}]")
        if status != "ok":
            shortfalls.append(name)
            if newest is not None:
                lines.append(f"    why not {name} {newest}: {why_not(name, newest)}")
    if shortfalls:
        level = "ERROR" if strict else "WARNING"
        lines.append(
            f"{level}: the newest world did NOT test the newest allowed release of {', '.join(shortfalls)}; "
            "it tested the older set above."
        )
    else:
        lines.append("newest world: every core package is at the newest release its ranges allow.")
    return lines, not shortfalls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strict", action="store_true", help="exit 1 when a package is not at its newest")
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    lines, complete = report(args.strict)
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.output:
        args.output.write_text(text)
    return 1 if args.strict and not complete else 0


if __name__ == "__main__":
    sys.exit(main())
