"""The ``NEED_DATA`` sentinel shared by every incremental reader in this package."""

from __future__ import annotations

from typing import Final

__all__ = ["NEED_DATA", "NeedData"]


class NeedData:
    """Type of the ``NEED_DATA`` sentinel (a singleton)."""

    _instance: NeedData | None = None

    def __new__(cls) -> NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"

    def __reduce__(self) -> str:
        return "NEED_DATA"


#: Returned by ``next_event()``/``next_page()`` when no complete item is buffered.
NEED_DATA: Final = NeedData()
