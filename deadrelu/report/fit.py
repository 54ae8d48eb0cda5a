"""Which columns of a text table to draw so that it fits the console.

Rich shrinks a table that is too wide by collapsing its wrappable columns first, which made
the site column, the one that names what each row is about, vanish at 80 columns (a CI log,
a pipe). Instead, the least useful columns are left out, in an order each table gives, until
the rest fits; the site column is never among them.
"""

from __future__ import annotations

from collections.abc import Sequence

# Space rich puts between two columns (and around the edges) in deadrelu's tables.
_GAP = 2


def fitting_columns(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int,
                    droppable: Sequence[str]) -> list[int]:
    """Indices of the columns to draw: all of them when they fit ``width``, else without the
    ``droppable`` ones, dropped in that order until the table fits (or none is left to drop).
    """
    need = [max([len(h), *(len(r[i]) for r in rows)]) + _GAP for i, h in enumerate(headers)]
    keep = list(range(len(headers)))
    for name in droppable:
        if sum(need[i] for i in keep) <= width:
            break
        if name in headers:
            keep.remove(headers.index(name))
    return keep


def dropped_note(headers: Sequence[str], keep: Sequence[int]) -> str | None:
    """The line under a table that lost columns to a narrow console, naming them."""
    gone = [h or "bar" for i, h in enumerate(headers) if i not in keep]
    if not gone:
        return None
    return (f"(not shown at this width: {', '.join(gone)}; a wider terminal, -f markdown or "
            "-f json has every column)")
