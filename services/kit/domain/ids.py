"""Identifiers: UUIDv7 (time-ordered, so primary-key indexes stay compact), increasing
within a process: ids made one after the other sort in that order even within one
millisecond, so ordering by id is ordering by creation (ds's review queue, "oldest first")."""

from __future__ import annotations

import os
import threading
import time
import uuid

# rand_a (12 bits) and rand_b (62 bits) of RFC 9562's layout, used as one 74-bit counter.
_RANDOM_BITS = 74
_RANDOM_B_BITS = 62


class _Sequence:
    """The (milliseconds, counter) of the latest id, advanced under a lock: ids are made on
    event loops and in worker threads alike."""

    def __init__(self) -> None:
        self._last = (0, 0)
        self._lock = threading.Lock()

    def after(self, millis: int, counter: int) -> tuple[int, int]:
        """(millis, counter) when it sorts after the latest, else the latest's counter plus one."""
        with self._lock:
            last_millis, last_counter = self._last
            if millis <= last_millis:
                millis, counter = last_millis, last_counter + 1
                if counter >> _RANDOM_BITS:  # 2^74 ids in one millisecond: borrow the next one
                    millis, counter = millis + 1, 0
            self._last = (millis, counter)
        return millis, counter


_SEQUENCE = _Sequence()


def new_id() -> str:
    """A UUIDv7 string (RFC 9562): 48-bit milliseconds, then random bits; within one
    millisecond (or a clock stepping back) the previous id's random bits plus one
    (§6.2, method 2: monotonic random), so each id sorts after the one before."""
    random_bits = int.from_bytes(os.urandom(10), "big") >> (80 - _RANDOM_BITS)
    millis, counter = _SEQUENCE.after(time.time_ns() // 1_000_000, random_bits)
    value = (
        (millis & ((1 << 48) - 1)) << 80
        | 0x7 << 76  # version 7
        | (counter >> _RANDOM_B_BITS) << 64
        | 0x2 << 62  # RFC 4122 variant
        | (counter & ((1 << _RANDOM_B_BITS) - 1))
    )
    return str(uuid.UUID(int=value))


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
