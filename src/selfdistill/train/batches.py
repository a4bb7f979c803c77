"""The prompt stream: a seeded per-epoch shuffle and a resumable position.

Every process walks the same global order and takes its own contiguous slice of each step's
prompts, so the global batch is the same whatever the number of processes, and a resumed run
sees exactly the prompts the uninterrupted run would have seen.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Sequence, TypeVar

T = TypeVar("T")


@dataclass
class DataPosition:
    """Where the stream is: ``epoch`` and ``index`` into that epoch's order, and the shuffle seed."""

    epoch: int = 0
    index: int = 0
    data_seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class PromptStream:
    """Yields the global batch of example indices for each step, epoch after epoch."""

    def __init__(self, num_examples: int, *, data_seed: int, shuffle: bool = True,
                 position: DataPosition | None = None) -> None:
        if num_examples < 1:
            raise ValueError("the prompt stream needs at least one example")
        self.n = num_examples
        self.shuffle = shuffle
        self.position = position or DataPosition(data_seed=data_seed)
        if self.position.data_seed != data_seed:
            raise ValueError(
                f"checkpoint was written with data.data_seed={self.position.data_seed}, the config "
                f"says {data_seed}: resume with the same seed"
            )

    def order(self, epoch: int) -> list[int]:
        idx = list(range(self.n))
        if self.shuffle:
            random.Random(self.position.data_seed * 1_000_003 + epoch).shuffle(idx)
        return idx

    def next_global(self, size: int) -> list[int]:
        """The next ``size`` example indices (crossing epoch boundaries), advancing the position."""
        out: list[int] = []
        while len(out) < size:
            order = self.order(self.position.epoch)
            take = order[self.position.index : self.position.index + size - len(out)]
            out += take
            self.position.index += len(take)
            if self.position.index >= self.n:
                self.position.epoch += 1
                self.position.index = 0
        return out


def shard(items: Sequence[T], rank: int, world: int) -> list[T]:
    """This process's contiguous share of a global batch (``len(items)`` divisible by ``world``)."""
    if len(items) % world:
        raise ValueError(f"{len(items)} items cannot be split evenly over {world} processes")
    per = len(items) // world
    return list(items[rank * per : (rank + 1) * per])
