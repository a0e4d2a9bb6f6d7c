"""The training loop: epochs of batches through one step function, with callbacks after every step.

The loop knows no model, data set or file: it is given the epoch's batches, a ``step(batch) -> loss`` and
callbacks (:mod:`moldiff.training.callbacks`) that evaluate, snapshot, checkpoint and log.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable, Iterator, Protocol, Sequence

from moldiff.training.parts import RunState


class Callback(Protocol):
    """Called after every step with the loop's view; ``on_end`` once when the loop stops."""

    def on_step(self, loop: "Loop") -> None: ...

    def on_end(self, loop: "Loop") -> None: ...


class Loop:
    """Epochs of ``batches(epoch)`` (each a sequence, consumed from ``state.step_in_epoch``) through ``step``.

    Stops after ``total_steps``, after ``max_hours`` of this call, or when ``should_stop()`` says so; the step in
    flight always finishes. Wall-clock and CPU time of each step are added to the run state by ``add_time``.
    """

    def __init__(self, state: RunState, batches: Callable[[int], Sequence], stream: Callable[[Sequence], Iterator],
                 step: Callable[[object], float], callbacks: Iterable[Callback], total_steps: int,
                 max_hours: float | None = None, should_stop: Callable[[], bool] = lambda: False,
                 add_time: Callable[[float, float], None] = lambda wall, cpu: None):
        self.state, self.batches, self.stream, self.step_fn = state, batches, stream, step
        self.callbacks = list(callbacks)
        self.total_steps, self.max_hours, self.should_stop, self.add_time = total_steps, max_hours, should_stop, add_time
        self.losses: list[float] = []
        self.epoch_length = 0
        self.end_of_epoch = False
        self.stopping = False

    @property
    def done(self) -> bool:
        return self.state.step >= self.total_steps

    def timed(self, fn: Callable[[], object]) -> object:
        """Run ``fn`` and count its wall-clock and CPU time in the run state."""
        t0, c0 = time.monotonic(), time.process_time()
        try:
            return fn()
        finally:
            self.add_time(time.monotonic() - t0, time.process_time() - c0)

    def run(self) -> RunState:
        start = time.monotonic()
        while not self.done and not self.stopping:
            batches = self.batches(self.state.epoch)
            self.epoch_length = len(batches)
            stream = self.stream(batches[self.state.step_in_epoch:])
            while self.state.step_in_epoch < len(batches) and not self.stopping:
                self.losses.append(self.timed(lambda: self.step_fn(next(stream))))
                self.state.step_in_epoch += 1
                self.end_of_epoch = self.state.step_in_epoch >= len(batches)
                if self.end_of_epoch:
                    self.state.epoch += 1
                    self.state.step_in_epoch = 0
                out_of_time = self.max_hours is not None and (time.monotonic() - start) / 3600 >= self.max_hours
                self.stopping = self.done or out_of_time or self.should_stop()
                for cb in self.callbacks:
                    cb.on_step(self)
                if self.end_of_epoch:
                    break  # the next epoch has its own batch order
        for cb in self.callbacks:
            cb.on_end(self)
        return self.state

    def take_losses(self) -> list[float]:
        """The training losses since the last call."""
        out, self.losses = self.losses, []
        return out
