"""``python -m audio_engine``: the engine process (the Go engine's replacement).

An entry point only: the process is assembled by ``audiogate.engine_process``.
"""

from __future__ import annotations

import sys

from audiogate.engine_process import main

if __name__ == "__main__":
    sys.exit(main())
