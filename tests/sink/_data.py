"""Records shaped like the API's, and a small harness that stages and finalizes them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harvester.api._records import fresh_records
from harvester.fields import DEFAULT_FIELDS
from harvester.sink import Layout, Segment, layout, normalise_page, write_segment

DAY = 86_400
JAN1 = 1_672_531_200  # 2023-01-01T00:00:00Z
NOW = datetime(2023, 2, 1, 12, 0, tzinfo=UTC)
FULL = layout(DEFAULT_FIELDS, ("create_date",))


def video(i: int, t: int, **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": 7_000_000_000_000_000_000 + i,
        "create_time": t,
        "username": f"user{i % 97}",
        "region_code": ["US", "GB", "DE"][i % 3],
        "video_description": f"video {i} #tag",
        "music_id": 6_900_000_000_000_000_000 + i,
        "like_count": i * 3,
        "comment_count": i % 7,
        "share_count": 1,
        "view_count": 10 * i,
        "effect_ids": ["1", "2"],
        "hashtag_names": ["a", "b"],
        "playlist_id": 5,
        "voice_to_text": "hi",
        "favorites_count": 2,
        "is_stem_verified": i % 2 == 0,
        "video_duration": 30,
        "hashtag_info_list": [{"hashtag_id": i, "hashtag_name": "a", "hashtag_description": "d"}],
        "sticker_info_list": [],
        "effect_info_list": [{"effect_id": "1", "effect_name": "x"}],
        "video_mention_list": ["@x"],
        "video_label": {"content": "lbl"},
        "video_tag": [{"number": 1, "type": "t"}],
    }
    rec.update(extra)
    return rec


def stage_pages(
    staging: Path,
    lay: Layout,
    leaf_key: str,
    window: tuple[int, int],
    pages: list[list[dict[str, Any]]],
) -> list[str]:
    """Normalise and stage `pages` of one leaf the way the orchestrator does; segment paths."""
    return [s.path for s in stage_segments(staging, lay, leaf_key, window, pages)]


def stage_segments(
    staging: Path,
    lay: Layout,
    leaf_key: str,
    window: tuple[int, int],
    pages: list[list[dict[str, Any]]],
) -> list[Segment]:
    seen: set[int] = set()
    paths = []
    for seq, page in enumerate(pages):
        fresh = fresh_records(page, seen)  # as a backend hands pages over: deduplicated
        result = normalise_page(
            fresh, lay, leaf_key=leaf_key, window=window, source="rqs", retrieved_at=NOW
        )
        if result.row_count:
            paths.append(write_segment(staging, leaf_key, seq, result.batch))
    return paths
