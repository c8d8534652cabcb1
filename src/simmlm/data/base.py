"""In-memory multimodal datasets and loaders.

Every dataset yields ``(inputs, mask, target)``: ``inputs`` maps modality name to a tensor, ``mask`` is the
boolean availability vector ``[M]`` (the truth about presence) and ``target`` the label. A missing modality's
tensor is zeros of the right shape, but nothing downstream ever infers presence from zeros.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from simmlm.subsets import check_mask

Batch = tuple[dict[str, Tensor], Tensor, Tensor]
IndexedBatch = tuple[dict[str, Tensor], Tensor, Tensor, Tensor]  # + the batch's row indices


class TensorMultimodalDataset(Dataset[Batch]):
    """A dataset held in memory as one tensor per modality.

    Indexing with an integer gives one sample; indexing with a list of integers gives a whole batch at
    once (used by :func:`make_loader`, which avoids per-sample collation).

    Args:
        inputs: modality name -> tensor ``[N, ...]`` (or rows read from a file as a batch asks for them,
            :class:`~simmlm.data.rows.RowFile`); the dict order is the modality order.
        mask: boolean ``[N, M]`` availability.
        targets: ``[N]`` (class index) or ``[N, ...]`` targets.
        ids: the samples' own names (e.g. a manifest's ``sample_id``), kept with the test predictions; or None.
    """

    def __init__(
        self, inputs: dict[str, Tensor], mask: Tensor, targets: Tensor, ids: Sequence[str] | None = None
    ) -> None:
        n = len(targets)
        if n == 0:
            raise ValueError("dataset is empty")
        if ids is not None and len(ids) != n:
            raise ValueError(f"{len(ids)} sample ids for {n} samples")
        if mask.dtype != torch.bool or mask.shape != (n, len(inputs)):
            raise ValueError(f"mask must be bool [{n}, {len(inputs)}], got {mask.dtype} {tuple(mask.shape)}")
        check_mask(mask)
        for name, tensor in inputs.items():
            if len(tensor) != n:
                raise ValueError(f"modality {name!r} has {len(tensor)} samples, targets have {n}")
        # Missing inputs are zero-filled here once, so no sample ever carries content for an absent modality; rows
        # read from a file (:class:`~simmlm.data.rows.RowFile`) are zero-filled as they are read.
        self.inputs = {
            name: tensor
            if getattr(tensor, "lazy", False)
            else torch.where(_expand(mask[:, m], tensor), tensor, torch.zeros((), dtype=tensor.dtype))
            for m, (name, tensor) in enumerate(inputs.items())
        }
        self.mask = mask
        self.targets = targets
        self.ids = None if ids is None else list(ids)

    @property
    def modalities(self) -> list[str]:
        return list(self.inputs)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int | Sequence[int] | Tensor) -> Batch:
        mask = self.mask[index]
        inputs = {k: v[index] for k, v in self.inputs.items()}
        for m, (name, source) in enumerate(self.inputs.items()):
            if getattr(source, "lazy", False):
                x = inputs[name]
                inputs[name] = torch.where(_expand(mask[..., m].reshape(-1), x), x, torch.zeros((), dtype=x.dtype))
        return inputs, mask, self.targets[index]


def _expand(column: Tensor, like: Tensor) -> Tensor:
    return column.reshape(-1, *([1] * (like.ndim - 1)))


@dataclass(frozen=True)
class Splits:
    """Train / validation / test datasets of one benchmark, plus what is needed to describe them."""

    train: TensorMultimodalDataset
    val: TensorMultimodalDataset
    test: TensorMultimodalDataset
    num_classes: int
    description: str
    preprocessing: dict[str, Any] = field(default_factory=dict)  # fitted on train; stored with checkpoints

    @property
    def modalities(self) -> list[str]:
        return self.train.modalities


def without_annotation(splits: Splits) -> Splits:
    """``splits`` whose training split marks every modality present: a missing modality is the zeros it already
    is, and nothing says it is missing (how a method that reads no annotation trains, e.g. ``dream_paper``).
    Validation and test keep their masks: the evaluation protocol defines its subsets by what each sample has."""
    if bool(splits.train.mask.all()):
        return splits
    unmarked = copy.copy(splits.train)  # the same inputs (zero-filled where missing), the same dataset class
    unmarked.mask = torch.ones_like(unmarked.mask)
    note = " Trained without the availability mask (missing modalities are zeros marked present)."
    return replace(splits, train=unmarked, description=splits.description + note)


def data_warnings(splits: Splits) -> list[str]:
    """What makes some numbers of a benchmark on ``splits`` say little, one line each: a split whose samples all have
    one class (classification; a validation split like that selects epochs on one class), and a modality that no
    validation or test sample has (every subset with it is then unmeasured, NaN)."""
    parts = {"train": splits.train, "val": splits.val, "test": splits.test}
    lines = []
    for name, part in parts.items():
        if splits.num_classes >= 2 and part.targets.ndim == 1 and part.targets.unique().numel() == 1:
            lines.append(
                f"every {name} sample has the same class; what is measured on that split says nothing about the "
                "other classes"
            )
        absent = [m for i, m in enumerate(part.modalities) if not bool(part.mask[:, i].any())]
        if absent and name != "train":
            lines.append(f"no {name} sample has {', '.join(absent)}: every subset with it goes unmeasured on {name}")
    return lines


class _WithIndex(Dataset[IndexedBatch]):
    def __init__(self, dataset: TensorMultimodalDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: Sequence[int]) -> IndexedBatch:
        return (*self.dataset[index], torch.as_tensor(index))


class ShardedBatchSampler(Sampler[list[Any]]):
    """Batches of a (seeded) order of ``range(size)``; under ``torch.distributed`` each rank takes its share.

    Alone it yields exactly what ``BatchSampler(RandomSampler(..., generator), batch_size)`` yields. With
    ``distributed=True`` and an initialised process group of ``W`` ranks, every rank draws the same global
    batches (all ranks seed the same generator) and keeps rows ``rank::W`` of each, so ``batch_size`` stays the
    *global* batch size and the ranks see disjoint samples; a last batch whose size is not a multiple of ``W``
    is padded with the epoch's first samples (as ``DistributedSampler`` pads). ``state_dict`` /
    ``load_state_dict`` save and restore the shuffling generator, so a resumed run draws the same orders.

    With ``with_epoch`` a batch lists ``(epoch, index)`` pairs instead of indices, ``epoch`` being what
    :meth:`set_epoch` was last given (Lightning calls it before every epoch, a resumed fit included): a dataset
    can then draw its randomness from ``(seed, epoch, index)`` alone (a dataset's random crops, for instance).
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        distributed: bool = False,
        with_epoch: bool = False,
    ) -> None:
        self.size, self.batch_size, self.shuffle, self.seed = size, batch_size, shuffle, seed
        self.distributed, self.with_epoch, self.epoch = distributed, with_epoch, 0
        self.generator = torch.Generator().manual_seed(seed) if shuffle else None
        order = RandomSampler(range(size), generator=self.generator) if shuffle else SequentialSampler(range(size))
        self.batches = BatchSampler(order, batch_size=batch_size, drop_last=False)

    def __reduce__(self) -> tuple[Any, ...]:
        # A torch.Generator (and its state tensor) fails torch.multiprocessing's shared-memory pickling under
        # ddp_spawn: send the generator's state as plain bytes instead.
        state = None if self.generator is None else self.generator.get_state().numpy().tobytes()
        options = (self.size, self.batch_size, self.shuffle, self.seed, self.distributed, self.with_epoch)
        return (_rebuild_sampler, (options, self.epoch, state))

    def set_epoch(self, epoch: int) -> None:
        """The epoch that ``with_epoch`` batches carry (the shuffling order does not depend on it)."""
        self.epoch = epoch

    def _world(self) -> tuple[int, int]:
        if self.distributed and dist.is_available() and dist.is_initialized():
            world, rank = dist.get_world_size(), dist.get_rank()
            if self.batch_size % world:
                raise ValueError(f"batch_size {self.batch_size} is not a multiple of the {world} processes")
            return world, rank
        return 1, 0

    def __iter__(self) -> Iterator[list[Any]]:
        world, rank = self._world()
        first: list[int] = []
        for batch in self.batches:
            if world > 1:
                first = first or list(batch)
                pad = -len(batch) % world
                batch = (batch + (first * world)[:pad])[rank::world]
            yield [(self.epoch, i) for i in batch] if self.with_epoch else batch

    def __len__(self) -> int:
        return len(self.batches)

    def state_dict(self) -> dict[str, Tensor]:
        """The shuffling generator's state (empty for a sequential order)."""
        return {} if self.generator is None else {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if self.generator is not None and "generator" in state:
            self.generator.set_state(state["generator"])


def _rebuild_sampler(options: tuple[Any, ...], epoch: int, state: bytes | None) -> ShardedBatchSampler:
    sampler = ShardedBatchSampler(*options)
    sampler.set_epoch(epoch)
    if state is not None:
        sampler.load_state_dict({"generator": torch.frombuffer(bytearray(state), dtype=torch.uint8)})
    return sampler


def make_loader(
    dataset: TensorMultimodalDataset,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    with_index: bool = False,
    distributed: bool = False,
) -> DataLoader:
    """A loader that fetches whole batches by fancy indexing (no per-sample collation).

    With ``with_index`` every batch carries a fourth element: the batch's row indices in ``dataset``. With
    ``distributed`` each rank of an initialised process group loads its share of every batch
    (:class:`ShardedBatchSampler`).
    """
    sampler = ShardedBatchSampler(len(dataset), batch_size, shuffle, seed, distributed)
    return DataLoader(_WithIndex(dataset) if with_index else dataset, sampler=sampler, batch_size=None)
