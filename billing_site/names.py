"""How close two names are: event names and metadata keys that differ by a typo or by case."""

from __future__ import annotations

MAX_NAME_DISTANCE = 2


def name_distance(a: str, b: str, limit: int = MAX_NAME_DISTANCE) -> int:
    """Levenshtein distance, or `limit + 1` as soon as it must exceed `limit` (a band of
    2 * limit + 1 cells per row: cheap against every meter, whatever the names' length)."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i] + [limit + 1] * len(b)
        for j in range(max(1, i - limit), min(len(b), i + limit) + 1):
            current[j] = min(
                previous[j] + 1,
                current[j - 1] + 1,
                previous[j - 1] + (char_a != b[j - 1]),
            )
        if min(current) > limit:
            return limit + 1
        previous = current
    return min(previous[len(b)], limit + 1)
