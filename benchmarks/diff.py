"""Benchmark: peak RSS and wall time of ``headsurgeon diff`` on the ~0.8B bf16 fixture.

Reuses ``benchmarks/surgery.py``'s cached Llama fixture (built once under ``benchmarks/.cache/``),
grows it by one label with ``add-label -o CHILD --link`` (unchanged shards hard-linked), then runs
``headsurgeon diff FIXTURE CHILD --json`` as a separate process and reports its wall time and peak
RSS (``os.wait4``). The promise checked: peak RSS under 400 MiB whatever the model's size, as the
diff holds one chunk of one tensor pair at a time.

Usage:
    python benchmarks/diff.py                    # ~0.8B fixture
    python benchmarks/diff.py --params 2
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

from surgery import CACHE, ENV, build_fixture, measure

LIMIT_MIB = 400


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=float, default=0.8, help="fixture size, billions (0.8)")
    args = parser.parse_args(argv)
    fixture = build_fixture(args.params)
    child = CACHE / "work-diff" / "child"
    shutil.rmtree(child.parent, ignore_errors=True)
    child.parent.mkdir(parents=True)
    cli = [sys.executable, "-m", "headsurgeon"]
    subprocess.run(
        [*cli, "add-label", str(fixture), "--name", "new", "-o", str(child), "--link"],
        check=True, env=ENV, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    wall, rss = measure([*cli, "diff", str(fixture), str(child), "--json"])
    shutil.rmtree(child.parent, ignore_errors=True)
    size = sum(p.stat().st_size for p in fixture.iterdir()) / 1e9
    print(
        f"diff of {fixture.name} ({size:.2f} GB) with its grown child: {wall:.1f} s, peak RSS {rss:.0f} MiB"
    )
    if rss >= LIMIT_MIB:
        raise SystemExit(f"peak RSS {rss:.0f} MiB is not under {LIMIT_MIB} MiB")
    return {"fixture": fixture.name, "gb": size, "wall_s": wall, "peak_rss_mib": rss}


if __name__ == "__main__":
    main()
