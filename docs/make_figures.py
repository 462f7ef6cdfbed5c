"""Regenerate the figures shown in the documentation: ``python docs/make_figures.py [--quick]``.

Writes ``docs/_static/figures/{fig1,theorem-4.4,theorem-4.2,policies}.png`` with the full
settings of ``mdm_exact.plotting`` (Fig. 1 at L = 512 takes tens of minutes on two cores, the
policies figure about 5 minutes of one core, theorem-4.2 about four, theorem-4.4 about a
minute). ``--quick`` renders the reduced versions in seconds, e.g. to check the layout.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mdm_exact.plotting import FIGURES

OUT = Path(__file__).resolve().parent / "_static" / "figures"


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate the documentation's figures.")
    parser.add_argument("--quick", action="store_true", help="reduced settings (seconds)")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"figures to render, among {', '.join(FIGURES)} (default: all)")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(FIGURES))
    if unknown:
        parser.error(f"unknown figure(s) {unknown}; choose from {list(FIGURES)}")
    OUT.mkdir(parents=True, exist_ok=True)
    for name in args.names or FIGURES:
        start = time.perf_counter()
        FIGURES[name](quick=args.quick).savefig(OUT / f"{name}.png", dpi=100)
        print(f"{name}: {time.perf_counter() - start:.0f} s -> {OUT / f'{name}.png'}")


if __name__ == "__main__":
    main()
