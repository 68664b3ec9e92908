"""``python -m gateway``: the gateway process (router, playground and, with a
token, the Discord bot).

An entry point only: the process is assembled by ``audiogate.gateway_process``
(the gateway package itself is a library that imports no front end).
"""

from __future__ import annotations

import sys

from audiogate.gateway_process import main

if __name__ == "__main__":
    sys.exit(main())
