"""``python -m devstack up|down``: what ``make up`` / ``make down`` run, from the repository root."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from devstack import stack


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    args = argv if argv is not None else sys.argv[1:]
    root = Path.cwd()
    if args == ["up"]:
        return stack.up(root)
    if args == ["down"]:
        return stack.down(stack.Paths(root))
    print("usage: python -m devstack up|down", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
