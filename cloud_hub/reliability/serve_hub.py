"""``cloud-hub serve`` alone, as ``python -m cloud_hub.reliability.serve_hub``.

The full ``cloud-hub`` command builds every subcommand's parser first, and some import torch on the
way: seconds per start. Scenarios that restart the hub many times run this instead: the same
``serve`` module, the same arguments, none of the rest.
"""

from __future__ import annotations

import argparse
import logging
import sys

from cloud_hub.commands import serve


def main() -> int:
    parser = argparse.ArgumentParser(prog="cloud-hub serve", description=serve.HELP)
    serve.add_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    return serve.run(args)


if __name__ == "__main__":
    sys.exit(main())
