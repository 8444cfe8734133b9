"""The one interface the orchestrator needs from a backend: resumable pages of a window."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Protocol, TypeVar

from harvester.api.types import Page, Resume

__all__ = ["Backend"]

Q_contra = TypeVar("Q_contra", contravariant=True)


class Backend(Protocol[Q_contra]):
    """Pages of `query` over the half-open UTC window `[start_epoch, end_epoch)`, and the
    cancelling of a remote task.

    Checkpoint `page.resume` with each page's records; after a crash pass it back as `resume`
    together with the ids already stored as `seen_ids`. `ResearchApiClient` takes a
    `RestQuery` (whole-day windows); `RqsClient` and `PyrqsBackend` take a `SeedQuery`.
    """

    def pages(
        self,
        query: Q_contra,
        start_epoch: int,
        end_epoch: int,
        fields: Sequence[str],
        *,
        resume: Resume | None = None,
        seen_ids: Iterable[int] = (),
    ) -> AsyncIterator[Page]: ...

    async def cancel(self, task_id: int) -> bool:
        """Cancel a task this backend created (`page.task_id`); False when it cannot be
        cancelled (finished, unknown) or the backend has no tasks (the public API)."""
        ...
