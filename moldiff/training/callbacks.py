"""What happens between training steps: evaluation rows in the metrics log, EMA snapshots, checkpoints."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from moldiff.io_utils import atomic_write_text


def append_metrics(path: Path, row: dict) -> None:
    """Append one JSON row to the metrics log, rewriting it atomically."""
    old = path.read_text() if path.exists() else ""
    atomic_write_text(path, old + json.dumps(row) + "\n")


class Evaluate:
    """Every ``every`` steps (and at the last one): ``evaluate(train_loss) -> row``, appended to ``log`` and
    passed to ``echo`` on the writing rank."""

    def __init__(self, every: int, evaluate: Callable[[float], dict], log: Path | None,
                 echo: Callable[[str], None] = lambda line: None):
        self.every, self.evaluate, self.log, self.echo = max(1, every), evaluate, log, echo

    def on_step(self, loop) -> None:
        if loop.state.step % self.every == 0 or loop.done:
            losses = loop.take_losses()
            row = loop.timed(lambda: self.evaluate(sum(losses) / max(len(losses), 1)))
            if self.log is not None:
                append_metrics(self.log, row)
                self.echo(json.dumps(row))

    def on_end(self, loop) -> None:
        pass


class Snapshots:
    """Every ``every`` steps: ``save()`` (e.g. the EMA weights as a small sampling checkpoint)."""

    def __init__(self, every: int, save: Callable[[], object]):
        self.every, self.save = every, save

    def on_step(self, loop) -> None:
        if self.every and loop.state.step % self.every == 0:
            loop.timed(self.save)

    def on_end(self, loop) -> None:
        pass


class Checkpoints:
    """``save()`` every ``minutes`` of wall clock or ``steps`` steps (whichever comes first), at the end of each
    epoch and when the loop stops. The first checkpoint of a call comes early — after ``first_minutes`` at
    most — so that an interrupted run loses little even when the interval is long."""

    def __init__(self, save: Callable[[], None], minutes: float, steps: int | None = None,
                 first_minutes: float = 1.0):
        self.save, self.minutes, self.steps = save, minutes, steps
        self.first_minutes = min(first_minutes, minutes)
        self.last = time.monotonic()
        self.saved_once = False

    def on_step(self, loop) -> None:
        elapsed = (time.monotonic() - self.last) / 60
        due = elapsed >= (self.minutes if self.saved_once else self.first_minutes) or bool(
            self.steps and loop.state.step % self.steps == 0)
        if due or loop.stopping or loop.end_of_epoch:
            loop.timed(self.save)
            self.last = time.monotonic()
            self.saved_once = True

    def on_end(self, loop) -> None:
        pass
