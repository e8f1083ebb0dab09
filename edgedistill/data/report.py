"""What loading did to the user's data: files skipped as unreadable, images resized, transparent
pixels composited on black, channels converted.

The loader returns this record with the dataset (``ImageDataset.load_report``); the build prints
its :meth:`DataLoadReport.lines` in the data stage, and the manifest, ``report.md`` and
``report.html`` carry the same. It is the one account of these changes: Python warnings are not
used for them (the CLI silences library warnings).
"""

from __future__ import annotations

from dataclasses import dataclass

SHOWN_PATHS = 5  # how many paths a sentence names before "and N more"


def size_text(hw: tuple[int, int] | list[int]) -> str:
    """(H, W) as ``HxW``."""
    return f"{int(hw[0])}x{int(hw[1])}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _first(paths: tuple[str, ...], count: int) -> str:
    """``: a, b, c and N more`` (nothing when no path is known)."""
    if not paths:
        return ""
    more = count - min(len(paths), SHOWN_PATHS)
    return ": " + ", ".join(paths[:SHOWN_PATHS]) + (f" and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class DataLoadReport:
    """``skipped``: paths (relative to the data root) of every unreadable image, in reading order.
    ``resized``: ``(from size "HxW", count)`` pairs, most frequent first, of the images brought to
    ``target_size`` (H, W); ``target_from`` says why that size: ``"given"`` (``--image-size``) or
    ``"most common"``. ``transparent``: the first paths of the ``transparent_count`` images with
    transparent pixels, composited on black. ``converted``: the first paths of the
    ``converted_count`` images brought to ``converted_to`` (``"RGB"`` or ``"grayscale"``), because
    ``--channels`` asked (``converted_forced``) or, for grayscale images, because others are in colour."""

    skipped: tuple[str, ...] = ()
    resized: tuple[tuple[str, int], ...] = ()
    target_size: tuple[int, int] | None = None
    target_from: str = ""
    transparent: tuple[str, ...] = ()
    transparent_count: int = 0
    converted: tuple[str, ...] = ()
    converted_count: int = 0
    converted_to: str = ""
    converted_forced: bool = False

    @property
    def skipped_count(self) -> int:
        return len(self.skipped)

    @property
    def resized_count(self) -> int:
        return sum(n for _, n in self.resized)

    def __bool__(self) -> bool:
        return bool(self.skipped or self.resized or self.transparent_count or self.converted_count)

    def lines(self) -> list[str]:
        """One sentence per kind of change; empty when the data was taken as it is."""
        out = []
        if self.skipped:
            out.append(f"{_plural(self.skipped_count, 'unreadable image')} skipped"
                       f"{_first(self.skipped, self.skipped_count)} (--strict stops on them instead)")
        if self.resized:
            n = self.resized_count
            why = {"given": " as --image-size asks",
                   "most common": " (the most common size; --image-size H --image-size W chooses another)",
                   }.get(self.target_from, "")
            sources = ", ".join(f"{count} from {size}" for size, count in self.resized)
            target = size_text(self.target_size) if self.target_size else "one size"
            out.append(f"{_plural(n, 'image')} resized to {target}{why}: {sources}")
        if self.transparent_count:
            paths = _first(self.transparent, self.transparent_count)
            out.append(f"{_plural(self.transparent_count, 'image')} with transparent pixels composited on black "
                       f"(colour times alpha; the alpha channel is not kept){paths}"
                       " (flatten them onto the background your app shows them on, if another)")
        if self.converted_count:
            out.append(self._converted_line())
        return out

    def _converted_line(self) -> str:
        n, paths = self.converted_count, _first(self.converted, self.converted_count)
        if self.converted_to == "grayscale":
            return f"{_plural(n, 'colour image')} converted to grayscale (ITU-R 601 luma) as --channels 1 asks{paths}"
        why = " as --channels 3 asks" if self.converted_forced else " because other images are in colour"
        tail = "" if self.converted_forced else " (--channels 1 makes every image grayscale instead)"
        return f"{_plural(n, 'grayscale image')} converted to RGB (the gray value in each channel){why}{paths}{tail}"

    def to_dict(self) -> dict:
        return {
            "skipped": list(self.skipped),
            "skipped_count": self.skipped_count,
            "resized": dict(self.resized),
            "resized_count": self.resized_count,
            "target_size": list(self.target_size) if self.target_size else None,
            "target_size_from": self.target_from,
            "transparent": list(self.transparent),
            "transparent_count": self.transparent_count,
            "transparent_composited_on": "black" if self.transparent_count else None,
            "converted": list(self.converted),
            "converted_count": self.converted_count,
            "converted_to": self.converted_to or None,
            "converted_forced": self.converted_forced,
        }

    @classmethod
    def from_dict(cls, d: dict | None) -> "DataLoadReport":
        """The inverse of :meth:`to_dict`; a missing or empty dict (an older manifest) is an empty
        report, and missing keys (a manifest older than a kind of note) are that note's absence."""
        if not d:
            return cls()
        target = d.get("target_size")
        return cls(
            skipped=tuple(str(p) for p in d.get("skipped", ())),
            resized=tuple((str(k), int(v)) for k, v in (d.get("resized") or {}).items()),
            target_size=(int(target[0]), int(target[1])) if target else None,
            target_from=str(d.get("target_size_from", "")),
            transparent=tuple(str(p) for p in d.get("transparent") or ()),
            transparent_count=int(d.get("transparent_count") or 0),
            converted=tuple(str(p) for p in d.get("converted") or ()),
            converted_count=int(d.get("converted_count") or 0),
            converted_to=str(d.get("converted_to") or ""),
            converted_forced=bool(d.get("converted_forced", False)),
        )

    @classmethod
    def of(cls, skipped=(), resized_from=None, target_size=None, target_from: str = "", *,
           transparent=(), transparent_count: int | None = None, converted=(), converted_count: int | None = None,
           converted_to: str = "", converted_forced: bool = False) -> "DataLoadReport":
        """Build from a list of skipped paths and a ``{(H, W): count}`` mapping of the original sizes of
        the resized images; the counts of the other notes default to their paths' number."""
        pairs = sorted(((size_text(hw), int(n)) for hw, n in (resized_from or {}).items() if n),
                       key=lambda p: (-p[1], p[0]))
        return cls(tuple(skipped), tuple(pairs),
                   (int(target_size[0]), int(target_size[1])) if target_size is not None else None, target_from,
                   tuple(transparent), len(transparent) if transparent_count is None else int(transparent_count),
                   tuple(converted), len(converted) if converted_count is None else int(converted_count),
                   converted_to, converted_forced)
