"""Shared benchmark plumbing: a description of the machine and dated sections in BENCHMARKS.md."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def machine() -> str:
    """CPU model, core count and memory of this machine, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        mem_kb = 0
    return f"{cpu}, {os.cpu_count()} cores, {mem_kb / 2**20:.0f} GiB RAM, Python {platform.python_version()}"


def append_section(title: str, command: str, body: str) -> None:
    """Append a dated result section (title, command, machine, body) to BENCHMARKS.md."""
    date = datetime.date.today().isoformat()
    section = f"\n## {title} — {date}\n\nCommand: `{command}`  \nMachine: {machine()}\n\n{body}\n"
    if not BENCHMARKS_MD.exists():
        BENCHMARKS_MD.write_text(
            "# Benchmarks\n\nEach section: the command, the machine, the date.\n"
        )
    with open(BENCHMARKS_MD, "a") as handle:
        handle.write(section)
