"""Runs localstripe (the fake Stripe server from PyPI) on 127.0.0.1:PORT for the payment tests.

Two changes from its own `localstripe --port N` entry point, both about where it runs, none about
what it answers: it listens on 127.0.0.1 only (its entry point binds every interface), and it
keeps its objects in memory only (its entry point pickles them to the fixed path
/tmp/localstripe.pickle after every write, which concurrent test runs would share).
"""

from __future__ import annotations

import sys

from aiohttp import web
from localstripe import resources
from localstripe.server import app


def main() -> None:
    resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)


if __name__ == "__main__":
    main()
