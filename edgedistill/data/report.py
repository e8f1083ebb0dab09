"""What loading did to the user's data: files skipped as unreadable, images resized.

The loader returns this record with the dataset (``ImageDataset.load_report``); the build prints
its :meth:`DataLoadReport.lines` in the data stage, and the manifest, ``report.md`` and
``report.html`` carry the same. It is the one account of these changes: Python warnings are not
used for them (the CLI silences library warnings).
"""

from __future__ import annotations

from dataclasses import dataclass

SHOWN_PATHS = 5  # how many skipped paths a sentence names before "and N more"


def size_text(hw: tuple[int, int] | list[int]) -> str:
    """(H, W) as ``HxW``."""
    return f"{int(hw[0])}x{int(hw[1])}"


@dataclass(frozen=True)
class DataLoadReport:
    """``skipped``: paths (relative to the data root) of every unreadable image, in reading order.
    ``resized``: ``(from size "HxW", count)`` pairs, most frequent first, of the images brought to
    ``target_size`` (H, W); ``target_from`` says why that size: ``"given"`` (``--image-size``) or
    ``"most common"``."""

    skipped: tuple[str, ...] = ()
    resized: tuple[tuple[str, int], ...] = ()
    target_size: tuple[int, int] | None = None
    target_from: str = ""

    @property
    def skipped_count(self) -> int:
        return len(self.skipped)

    @property
    def resized_count(self) -> int:
        return sum(n for _, n in self.resized)

    def __bool__(self) -> bool:
        return bool(self.skipped or self.resized)

    def lines(self) -> list[str]:
        """One sentence per kind of change; empty when the data was taken as it is."""
        out = []
        if self.skipped:
            shown = ", ".join(self.skipped[:SHOWN_PATHS])
            more = self.skipped_count - SHOWN_PATHS
            out.append(f"{self.skipped_count} unreadable image{'s' if self.skipped_count != 1 else ''} skipped: "
                       f"{shown}" + (f" and {more} more" if more > 0 else "")
                       + " (--strict stops on them instead)")
        if self.resized:
            n = self.resized_count
            why = {"given": " as --image-size asks",
                   "most common": " (the most common size; --image-size H W chooses another)"}.get(self.target_from, "")
            sources = ", ".join(f"{count} from {size}" for size, count in self.resized)
            target = size_text(self.target_size) if self.target_size else "one size"
            out.append(f"{n} image{'s' if n != 1 else ''} resized to {target}{why}: {sources}")
        return out

    def to_dict(self) -> dict:
        return {
            "skipped": list(self.skipped),
            "skipped_count": self.skipped_count,
            "resized": dict(self.resized),
            "resized_count": self.resized_count,
            "target_size": list(self.target_size) if self.target_size else None,
            "target_size_from": self.target_from,
        }

    @classmethod
    def from_dict(cls, d: dict | None) -> "DataLoadReport":
        """The inverse of :meth:`to_dict`; a missing or empty dict (an older manifest) is an empty report."""
        if not d:
            return cls()
        target = d.get("target_size")
        return cls(
            skipped=tuple(str(p) for p in d.get("skipped", ())),
            resized=tuple((str(k), int(v)) for k, v in (d.get("resized") or {}).items()),
            target_size=(int(target[0]), int(target[1])) if target else None,
            target_from=str(d.get("target_size_from", "")),
        )

    @classmethod
    def of(cls, skipped=(), resized_from=None, target_size=None, target_from: str = "") -> "DataLoadReport":
        """Build from a list of skipped paths and a ``{(H, W): count}`` mapping of the original sizes of
        the resized images."""
        pairs = sorted(((size_text(hw), int(n)) for hw, n in (resized_from or {}).items() if n),
                       key=lambda p: (-p[1], p[0]))
        return cls(tuple(skipped), tuple(pairs),
                   (int(target_size[0]), int(target_size[1])) if target_size is not None else None, target_from)
