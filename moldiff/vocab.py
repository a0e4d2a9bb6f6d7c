"""The vocabulary of a model: which elements, formal charges and bond orders its one-hot blocks hold.

It is read from the training data (:func:`Vocabulary.from_counts`), saved in the model's config (and so in
every checkpoint), and used by the featuriser and the decoder; no module names a dataset's elements.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from moldiff.elements import atomic_number

DEFAULT_BOND_ORDERS = (1, 2, 3)  # kekulised single, double, triple


@dataclass(frozen=True)
class Vocabulary:
    """Element classes (sorted by atomic number), formal-charge classes and bond orders (class 0 = no bond)."""

    elements: tuple[str, ...]
    charges: tuple[int, ...] = (0,)
    bond_orders: tuple[int, ...] = DEFAULT_BOND_ORDERS

    def __post_init__(self) -> None:
        if not self.elements:
            raise ValueError("a vocabulary needs at least one element")
        for e in self.elements:
            atomic_number(e)  # raises for a symbol that is no element
        if len(set(self.elements)) != len(self.elements) or len(set(self.charges)) != len(self.charges):
            raise ValueError(f"repeated classes in the vocabulary {self}")
        if 0 not in self.charges:
            raise ValueError("the charge classes must include 0")
        if any(o <= 0 for o in self.bond_orders):
            raise ValueError(f"bond orders must be positive, got {self.bond_orders}")

    @staticmethod
    def from_counts(elements: Iterable[str], charges: Iterable[int] = (0,),
                    bond_orders: Iterable[int] = DEFAULT_BOND_ORDERS) -> "Vocabulary":
        """The vocabulary of what a dataset holds: its elements by atomic number, its charges ascending (0
        always included) and the kekulised bond orders 1–3 (plus any higher order it holds)."""
        return Vocabulary(tuple(sorted(set(elements), key=atomic_number)),
                          tuple(sorted(set(charges) | {0})),
                          tuple(sorted(set(bond_orders) | set(DEFAULT_BOND_ORDERS))))

    @property
    def atomic_numbers(self) -> tuple[int, ...]:
        return tuple(atomic_number(e) for e in self.elements)

    @property
    def bond_classes(self) -> int:
        """Classes of the pair one-hot: no bond plus one per order."""
        return 1 + len(self.bond_orders)

    def missing(self, elements: Iterable[str] = (), charges: Iterable[int] = (),
                bond_orders: Iterable[int] = ()) -> list[str]:
        """What data hold that this vocabulary lacks, in words (empty when it covers them)."""
        out = [f"element {e}" for e in sorted(set(elements) - set(self.elements))]
        out += [f"formal charge {c:+d}" for c in sorted(set(charges) - set(self.charges))]
        out += [f"bond order {o}" for o in sorted(set(bond_orders) - set(self.bond_orders))]
        return out
