"""Progress for long steps: silent for the Python API, a live rich display for the CLI."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Progress:
    """Silent progress (the Python API's default); subclasses display it."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, title: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        """Run a named step; yields ``advance(n)`` for steps with a known ``total``.

        Records the step's wall time in ``self.timings``.
        """
        start = time.perf_counter()
        try:
            yield lambda n=1: None
        finally:
            self.timings[title] = round(time.perf_counter() - start, 3)


class RichProgress(Progress):
    """Shows each step on stderr with a spinner (or a bar when the total is known) and its time."""

    def __init__(self) -> None:
        super().__init__()
        from rich.console import Console

        self.console = Console(stderr=True)

    @contextmanager
    def step(self, title: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        """Show the step live while it runs and a check mark with its duration when done."""
        if not self.console.is_terminal:
            # No live display in logs (CI): one line when the step starts, one when it ends.
            self.console.print(f"  ... {title}", highlight=False)
            start = time.perf_counter()
            try:
                yield lambda n=1: None
            except BaseException:
                self.console.print(f"  failed {title} ({time.perf_counter() - start:.1f} s)", highlight=False)
                raise
            finally:
                self.timings[title] = round(time.perf_counter() - start, 3)
            self.console.print(f"  done {title} ({self.timings[title]:.1f} s)", highlight=False)
            return
        from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichBar

        columns = [SpinnerColumn(), TextColumn("{task.description}")]
        if total:
            columns += [BarColumn(), MofNCompleteColumn()]
        columns.append(TimeElapsedColumn())
        start = time.perf_counter()
        ok = False
        with RichBar(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task(title, total=total)
            try:
                yield lambda n=1: bar.advance(task, n)
                ok = True
            finally:
                elapsed = time.perf_counter() - start
                self.timings[title] = round(elapsed, 3)
        mark = "[green]done[/]" if ok else "[red]failed[/]"
        self.console.print(f"  {mark} {title} [dim]({elapsed:.1f} s)[/]")
