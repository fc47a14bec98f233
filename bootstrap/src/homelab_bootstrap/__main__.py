"""`homelab-bootstrap`: the command behind `task up` and `task configure`."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    print(f"homelab-bootstrap: no command is delivered yet (asked: {' '.join(args) or 'nothing'})", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
