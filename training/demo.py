"""`make demo` entry point (filled in stage by stage as the system grows; it never pretends)."""
import sys


def main() -> int:
    print("make demo: the end-to-end demo is not built yet; run `make test` for what exists.")
    return 1


if __name__ == "__main__":
    sys.exit(main())
