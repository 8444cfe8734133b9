"""The enrichment catalogue: one row per kind of data fetched *about* harvested videos.

Each kind names its Research API endpoint, what identifies a target (a video id, a username or a
playlist id, taken from the video dataset), the body key the endpoint wants, the list keys its
answers use (they differ between the API reference's pages), how it pages, which daily quota
pool it draws from, and its fields with their types. The simulator, the API client, the sink and
the config all read this table, so a kind is described once (like `fields.CATALOGUE` for videos).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from harvester.fields import BOOL, INT64, STRING, STRINGS, ListOf, StructOf, Type

__all__ = [
    "CATEGORIES",
    "COMMENT_CEILING",
    "FOLLOWERS_DAILY_RECORDS",
    "FOLLOWERS_DAILY_REQUESTS",
    "KINDS",
    "Kind",
    "KindName",
    "Paging",
    "Pool",
    "kind",
]

KindName = Literal[
    "comments",
    "users",
    "followers",
    "following",
    "liked_videos",
    "pinned_videos",
    "reposted_videos",
    "playlists",
]
#: index: `cursor` is a position that grows; time: `cursor` is a Unix time that falls (newest
#: first); none: one answer, no paging.
Paging = Literal["index", "time", "none"]
#: research: the 1,000 requests / 100,000 records a day shared with the video query;
#: followers: the followers/following lists' own 20,000 calls / 2,000,000 records.
Pool = Literal["research", "followers"]

#: The comment endpoint serves the top 1,000 comments of a video (and of a comment's replies).
COMMENT_CEILING = 1_000
FOLLOWERS_DAILY_REQUESTS = 20_000
FOLLOWERS_DAILY_RECORDS = 2_000_000

_HASHTAG_INFO = ListOf(
    StructOf((("hashtag_id", INT64), ("hashtag_name", STRING), ("hashtag_description", STRING)))
)
#: The video fields the user-video endpoints (liked, pinned, reposted) document.
_VIDEO_FIELDS: tuple[tuple[str, Type], ...] = (
    ("id", INT64),
    ("create_time", INT64),
    ("username", STRING),
    ("region_code", STRING),
    ("video_description", STRING),
    ("music_id", INT64),
    ("like_count", INT64),
    ("comment_count", INT64),
    ("share_count", INT64),
    ("view_count", INT64),
    ("hashtag_names", STRINGS),
    ("is_stem_verified", BOOL),
    ("favorites_count", INT64),
    ("video_duration", INT64),
    ("hashtag_info_list", _HASHTAG_INFO),
    ("video_mention_list", STRINGS),
)

#: On a user's liked / pinned / reposted videos, `username` is the target (whose list it is);
#: the video's own creator is kept as `creator_username`.
_VIDEO_RENAMES = (("username", "creator_username"),)


@dataclass(frozen=True, slots=True)
class Kind:
    """One enrichment kind.

    `target` is the dataset column that holds the target's identity (`video_id`, `username`,
    `playlist_id`) and `source_column` the video dataset's column it is taken from. `fields`
    are what the endpoint returns per record (the `fields` query parameter when `fields_param`);
    `record_key` identifies a record within its target (for deduplication across pages).
    `list_keys` are every list key the documentation shows for the answer, the first preferred.
    """

    name: KindName
    endpoint: str
    target: str
    target_type: Literal["int64", "string"]
    source_column: str
    body_key: str
    list_keys: tuple[str, ...]
    paging: Paging
    pool: Pool
    fields: tuple[tuple[str, Type], ...]
    record_key: str
    fields_param: bool = True
    max_count: int = 100
    #: API field -> dataset column, where a field's name would clash with the target column.
    renames: tuple[tuple[str, str], ...] = ()
    #: The VCE's category serving the kind through pyrqs (research-tools-facts, fact 14);
    #: None: the VCE serves it under no category, so a pyrqs study cannot enrich with it.
    category: str | None = None

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.fields)

    def field_type(self, name: str) -> Type:
        return dict(self.fields)[name]

    @property
    def columns(self) -> tuple[tuple[str, Type], ...]:
        """The dataset's data columns: the target first, then the fields (renamed)."""
        renames = dict(self.renames)
        target_type: Type = INT64 if self.target_type == "int64" else STRING
        cols = [(self.target, target_type)]
        cols += [(renames.get(n, n), t) for n, t in self.fields if renames.get(n, n) != self.target]
        return tuple(cols)

    def condition_groups(self, targets: Sequence[Any]) -> list[dict[str, Any]]:
        """The VCE category's query for `targets` in the RQS binding's shape: one `and` group,
        `IN` on the kind's key, the values as strings (as `field_values` always are)."""
        values = [str(t) for t in targets]
        condition = {"field": self.target, "operator": "IN", "field_values": values}
        return [{"operator": "and", "conditions": [condition]}]

    @property
    def flat(self) -> bool:
        """The answer is one object (user info), not a list of records."""
        return not self.list_keys


def _of_user(
    name: KindName,
    path: str,
    list_keys: tuple[str, ...],
    paging: Paging,
    fields: tuple[tuple[str, Type], ...],
    record_key: str,
    *,
    pool: Pool = "research",
    fields_param: bool = True,
    renames: tuple[tuple[str, str], ...] = (),
    category: str,
) -> Kind:
    """A kind about a user: the target is the video's creator, sent as `username` to
    `/v2/research/user/<path>/`."""
    return Kind(
        name,
        f"/v2/research/user/{path}/",
        target="username",
        target_type="string",
        source_column="username",
        body_key="username",
        list_keys=list_keys,
        paging=paging,
        pool=pool,
        fields=fields,
        record_key=record_key,
        fields_param=fields_param,
        renames=renames,
        category=category,
    )


def _users_listed(name: Literal["followers", "following"], list_key: str, prefix: str) -> Kind:
    """A user's followers or following: names only, on the followers pool, newest first."""
    return _of_user(
        name,
        name,
        (list_key,),
        "time",
        (("display_name", STRING), ("username", STRING)),
        "username",
        pool="followers",
        fields_param=False,
        renames=(("display_name", f"{prefix}_display_name"), ("username", f"{prefix}_username")),
        category=f"{name}_list",
    )


def _user_videos(name: KindName, list_keys: tuple[str, ...], paging: Paging) -> Kind:
    """A user's liked, pinned or reposted videos (the video fields those endpoints document)."""
    return _of_user(
        name, name, list_keys, paging, _VIDEO_FIELDS, "id", renames=_VIDEO_RENAMES, category=name
    )


KINDS: Mapping[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "comments",
            "/v2/research/video/comment/list/",
            target="video_id",
            target_type="int64",
            source_column="id",
            body_key="video_id",
            list_keys=("comments",),
            paging="index",
            pool="research",
            fields=(
                ("id", INT64),
                ("video_id", INT64),
                ("text", STRING),
                ("like_count", INT64),
                ("reply_count", INT64),
                ("parent_comment_id", INT64),
                ("create_time", INT64),
            ),
            record_key="id",
            category="comment",
        ),
        _of_user(
            "users",
            "info",
            (),
            "none",
            (
                ("display_name", STRING),
                ("bio_description", STRING),
                ("avatar_url", STRING),
                ("is_verified", BOOL),
                ("follower_count", INT64),
                ("following_count", INT64),
                ("likes_count", INT64),
                ("video_count", INT64),
            ),
            "",
            category="profile",
        ),
        _users_listed("followers", "user_followers", "follower"),
        _users_listed("following", "user_following", "following"),
        _user_videos("liked_videos", ("user_liked_videos",), "time"),
        _user_videos("pinned_videos", ("pinned_videos_list", "user_pinned_videos"), "none"),
        _user_videos("reposted_videos", ("user_reposted_videos", "reposted_videos"), "index"),
        Kind(
            "playlists",
            "/v2/research/playlist/info/",
            target="playlist_id",
            target_type="int64",
            source_column="playlist_id",
            body_key="playlist_id",
            list_keys=("playlist_video_ids",),
            paging="index",
            pool="research",
            # One row per video of the playlist; the playlist's own fields repeat on each.
            fields=(
                ("video_id", INT64),
                ("position", INT64),
                ("playlist_name", STRING),
                ("playlist_item_total", INT64),
                ("playlist_last_updated", INT64),
            ),
            record_key="video_id",
            fields_param=False,
            category="playlists",
        ),
    )
}


#: VCE category -> the kind it serves.
CATEGORIES: Mapping[str, Kind] = {k.category: k for k in KINDS.values() if k.category}


def kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"unknown enrichment kind {name!r}; use one of {', '.join(KINDS)}") from None
