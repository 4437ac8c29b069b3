"""The ``convt`` command line: ``example`` (the bundled end-to-end run) and ``bench``."""
from __future__ import annotations

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="convt", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("example", help="compile, export, load and run the bundled Keras example")
    b = sub.add_parser("bench", help="benchmark the suite against onnxruntime, OpenVINO and "
                                      "PyTorch")
    from .bench import add_arguments
    add_arguments(b)
    args = parser.parse_args(argv)
    if args.cmd == "example":
        from .example import run
        return run()
    if args.cmd == "bench":
        from .bench import run
        return run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
