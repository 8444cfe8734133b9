"""The enrichment endpoints: comments, user info, followers/following, liked / pinned / reposted
videos and playlists, consistent with the video corpus and generated lazily from the seed.

A video's `comment_count` is the number of its comments, replies included, and every reply's
`parent_comment_id` is a comment of the same video; a creator's profile, lists and videos depend
on `(seed, username)` only. Accounts can be private, deleted or under 18 (seeded shares, the
`account_*` fault rates): every user endpoint then answers a 400 naming the reason, as a
per-target verdict. Paging follows each endpoint's reference page: an index cursor (comments,
reposts, playlists), a falling Unix-time cursor (followers, following, liked videos) or none
(pinned videos); the comment list serves the top 1,000 only. The flaky profile's short pages
and duplicates act here too, and list keys alternate between the spellings the pages show.
`EnrichCorpus.expected` is the oracle: the exact rows (or the verdict) a correct client gets.
"""

from __future__ import annotations

import functools
import random
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from harvester.kinds import COMMENT_CEILING, KINDS, Kind
from harvester.query import clean_string
from harvester.simulator import vce
from harvester.simulator.corpus import SETTLE
from harvester.simulator.responses import (
    BadBody,
    Invalid,
    body_int,
    error,
    json_response,
    ok,
    read_json,
)

if TYPE_CHECKING:
    from harvester.simulator.app import Simulator

__all__ = ["EnrichCorpus", "add_routes"]

Record = dict[str, Any]
#: Follow times lie in [2019-01-01, 2022-01-01): before any simulated clock a test uses.
_FOLLOW_FROM = int(datetime(2019, 1, 1, tzinfo=UTC).timestamp())
_FOLLOW_SPAN = 3 * 365 * 86_400
#: Comments are posted within this time of their video, replies within it of their comment: a
#: video's comments are all there once its counts settle (fact 3: 10 days).
_POSTED_WITHIN = SETTLE // 2
#: The longest follower / following list served (the real lists are capped too, by reports).
FOLLOW_LIST_CAP = 600
_CACHE = 4_096
_WORDS = (
    "nice",
    "lol",
    "🔥",
    "wow",
    "same",
    "who else",
    "part 2",
    "😂",
    "true",
    "no way",
    "this is",
    "so good",
    "facts",
    "me too",
    "¿qué?",
    "日本",
    "❤️",
    "omg",
    "yes",
)


def _lru(size: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return functools.lru_cache(maxsize=size)


class EnrichCorpus:
    """Comments, profiles and lists of a seed's corpus; every method is deterministic."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.seed = sim.config.seed
        pools = sim.corpus.pools
        #: Usernames as a client sees them (control characters removed), to the pool's own.
        self.usernames = {clean_string(u): u for u in pools.usernames}
        self._names = tuple(self.usernames)
        self.playlist_ids = frozenset(p for p in pools.playlist_ids if p)
        #: comment id -> (video id, its replies): how the reply endpoint finds a comment.
        self._comment_index: OrderedDict[int, tuple[int, int]] = OrderedDict()
        self.comments = _lru(_CACHE)(self._comments)
        self.replies = _lru(_CACHE)(self._replies)
        self.profile = _lru(_CACHE)(self._profile)
        self.follow_list = _lru(_CACHE)(self._follow_list)
        self.user_videos = _lru(_CACHE)(self._user_videos)
        self.playlist = _lru(_CACHE)(self._playlist)

    # ------------------------------------------------------------------ accounts

    def account(self, username: str) -> str:
        """'ok', or why the API refuses this account: 'deleted', 'private' or 'under_18'."""
        if username not in self.usernames:
            return "deleted"
        f = self.sim.faults.config
        r = random.Random(f"account:{self.seed}:{username}").random()
        for verdict, share in (
            ("deleted", f.account_deleted),
            ("private", f.account_private),
            ("under_18", f.account_under_18),
        ):
            if r < share:
                return verdict
            r -= share
        return "ok"

    def _profile(self, username: str) -> Record:
        rng = random.Random(f"profile:{self.seed}:{username}")
        r = rng.random
        r()  # the draw that was the follower count: the other fields stay as they were
        # One count per creator: the test stage's eligibility reads the same (vce.followers).
        followers = vce.followers(self.sim.corpus, self.usernames.get(username, username))
        return {
            "display_name": f"{username.title()} {rng.choice(_WORDS)}",
            "bio_description": " ".join(rng.choices(_WORDS, k=rng.randint(0, 6))),
            "avatar_url": f"https://p16.example.invalid/avatar/{rng.getrandbits(48):x}.jpeg",
            "is_verified": r() < 0.03,
            "follower_count": followers,
            "following_count": int(r() * 400),
            "likes_count": int(followers * r() * 30),
            "video_count": int(r() * 200),
        }

    def _follow_list(self, username: str, which: str) -> tuple[Record, ...]:
        """Followers (or followed accounts), newest first, with distinct follow times."""
        rng = random.Random(f"{which}:{self.seed}:{username}")
        if which == "followers":
            n = min(self.profile(username)["follower_count"], FOLLOW_LIST_CAP)
        else:
            n = min(self.profile(username)["following_count"], FOLLOW_LIST_CAP)
        names = [u for u in rng.sample(self._names, min(n + 1, len(self._names))) if u != username]
        times = sorted(rng.sample(range(_FOLLOW_FROM, _FOLLOW_FROM + _FOLLOW_SPAN), len(names)))
        out = [
            {
                "display_name": self.profile(u)["display_name"],
                "username": self.usernames[u],
                "_time": t,
            }
            for u, t in zip(names[:n], times[:n], strict=False)
        ]
        out.sort(key=lambda x: -x["_time"])
        return tuple(out)

    def _random_videos(self, rng: random.Random, n: int) -> list[Record]:
        corpus = self.sim.corpus
        out: dict[int, Record] = {}
        for _ in range(n * 2):
            if len(out) >= n:
                break
            day = corpus.day(rng.randrange(corpus.first_day, corpus.end_day))
            if day.videos:
                v = day.videos[rng.randrange(len(day.videos))]
                out[v["id"]] = v
        return list(out.values())

    def _user_videos(self, username: str, which: str) -> tuple[Record, ...]:
        """Liked (newest first, distinct create times), pinned (≤ 3) or reposted videos."""
        rng = random.Random(f"{which}:{self.seed}:{username}")
        n = {"liked_videos": rng.randint(0, 60), "pinned_videos": rng.randint(0, 3)}.get(
            which, rng.randint(0, 45)
        )
        videos = self._random_videos(rng, n)
        if which == "liked_videos":
            by_time = {v["create_time"]: v for v in videos}  # the time cursor needs distinct
            videos = [by_time[t] for t in sorted(by_time, reverse=True)]
        return tuple(videos)

    def _playlist(self, playlist_id: int) -> Record:
        rng = random.Random(f"playlist:{self.seed}:{playlist_id}")
        ids = [v["id"] for v in self._random_videos(rng, rng.randint(1, 130))]
        return {
            "playlist_id": playlist_id,
            "playlist_name": f"{rng.choice(_WORDS)} playlist {playlist_id % 1000}",
            "playlist_item_total": len(ids),
            "playlist_last_updated": _FOLLOW_FROM + rng.randrange(_FOLLOW_SPAN),
            "playlist_video_ids": tuple(ids),
        }

    # ------------------------------------------------------------------ comments

    def _comments(self, video_id: int) -> tuple[Record, ...]:
        """The video's top-level comments as served: most liked first, at most the ceiling."""
        video = self.sim.corpus.get(video_id)
        if video is None:
            return ()
        total = int(video["comment_count"])
        rng = random.Random(f"comments:{self.seed}:{video_id}")
        replies_total = int(total * rng.random() * 0.3) if total > 1 else 0
        top = total - replies_total
        served = min(top, COMMENT_CEILING)
        # Replies go to comments the most liked first; those beyond the ceiling keep the rest.
        counts = [0] * served
        if served and replies_total:
            pick = functools.partial(rng.randrange, served + max(0, top - served) // 4 + 1)
            for _ in range(min(replies_total, 20_000)):
                i = pick()
                if i < served:
                    counts[i] += 1
        base = int(video["create_time"])
        out: list[Record] = []
        for i in range(served):
            cid = (base + 1 + rng.randrange(_POSTED_WITHIN)) << 32 | rng.getrandbits(32)
            out.append(
                {
                    "id": cid,
                    "video_id": video_id,
                    "text": " ".join(rng.choices(_WORDS, k=rng.randint(1, 8))),
                    "like_count": int(50 / (1.0 - rng.random()) ** 1.5) // (i + 1),
                    "reply_count": counts[i],
                    "parent_comment_id": video_id,
                    "create_time": cid >> 32,
                }
            )
        out.sort(key=lambda c: (-c["like_count"], c["id"]))
        for c in out:
            self._comment_index[c["id"]] = (video_id, c["reply_count"])
        while len(self._comment_index) > 1_000_000:
            self._comment_index.popitem(last=False)
        return tuple(out)

    def comments_as_of(self, video_id: int, now: float) -> list[Record]:
        """The comments posted by `now`, each with the replies posted by then counted: what the
        API serves while the video's counts settle (all of them after). Updated on the hour,
        like the video's counts (a harvest and its oracle agree within the hour)."""
        full = self.comments(video_id)
        video = self.sim.corpus.get(video_id)
        if video is None or now >= int(video["create_time"]) + SETTLE:
            return list(full)
        now = now // 3600 * 3600
        out = []
        for c in full:
            if c["create_time"] > now:
                continue
            if c["reply_count"]:
                c = {**c, "reply_count": len(self.replies_as_of(c["id"], now))}
            out.append(c)
        return out

    def replies_as_of(self, comment_id: int, now: float) -> list[Record]:
        now = now // 3600 * 3600
        return [r for r in self.replies(comment_id) if r["create_time"] <= now]

    def comment(self, comment_id: int) -> tuple[int, int] | None:
        """(video id, reply count) of a comment served earlier."""
        return self._comment_index.get(comment_id)

    def _replies(self, comment_id: int) -> tuple[Record, ...]:
        found = self.comment(comment_id)
        if found is None:
            return ()
        video_id, n = found
        rng = random.Random(f"replies:{self.seed}:{comment_id}")
        base = comment_id >> 32
        out: list[Record] = []
        for _ in range(min(n, COMMENT_CEILING)):
            rid = (base + 1 + rng.randrange(_POSTED_WITHIN)) << 32 | rng.getrandbits(32)
            out.append(
                {
                    "id": rid,
                    "video_id": video_id,
                    "text": " ".join(rng.choices(_WORDS, k=rng.randint(1, 6))),
                    "like_count": int(5 / (1.0 - rng.random())),
                    "reply_count": 0,
                    "parent_comment_id": comment_id,
                    "create_time": rid >> 32,
                }
            )
        out.sort(key=lambda c: (-c["like_count"], c["id"]))
        return tuple(out)

    # ------------------------------------------------------------------ the oracle

    def verdict(self, kind: Kind, target: Any) -> str:
        """'ok' or the per-target refusal this target gets."""
        if kind.target == "username":
            return self.account(str(target))
        if kind.name == "comments":
            return "ok" if self.sim.corpus.get(int(target)) is not None else "deleted"
        return "ok" if int(target) in self.playlist_ids else "deleted"

    def records(
        self, kind: Kind, target: Any, *, times: bool = False, now: float | None = None
    ) -> list[Record]:
        """Every record the endpoint serves for `target` (a 'ok' target) at `now` (default: the
        simulator's clock), in serving order; `times` keeps the follow times (`_time`) the
        followers' cursor pages by."""
        name = kind.name
        if name == "comments":
            return self.comments_as_of(int(target), self.sim.clock.now() if now is None else now)
        if name == "users":
            return [dict(self.profile(str(target)))]
        if name in ("followers", "following"):
            rows = self.follow_list(str(target), name)
            return [dict(r) if times else _strip(r) for r in rows]
        if name == "playlists":
            p = self.playlist(int(target))
            meta = {
                k: p[k] for k in ("playlist_name", "playlist_item_total", "playlist_last_updated")
            }
            return [
                {"video_id": v, "position": i, **meta}
                for i, v in enumerate(p["playlist_video_ids"])
            ]
        fields = kind.field_names
        return [{f: v.get(f) for f in fields} for v in self.user_videos(str(target), name)]

    def expected(
        self,
        kind_name: str,
        target: Any,
        *,
        max_per_target: int | None = None,
        replies: bool = False,
        as_of: float | None = None,
    ) -> list[Record] | str:
        """The oracle: the rows a correct client stores for `target` (strings cleaned) when it
        fetches at `as_of` (default: the simulator's clock), or the verdict string when the API
        refuses it."""
        kind = KINDS[kind_name]
        verdict = self.verdict(kind, target)
        if verdict != "ok":
            return verdict
        now = self.sim.clock.now() if as_of is None else as_of
        rows = self.records(kind, target, now=now)
        if max_per_target is not None:
            rows = rows[:max_per_target]
        if kind.name == "comments" and replies:
            more: list[Record] = []
            for c in rows:
                if c["reply_count"]:
                    found = self.replies_as_of(c["id"], now)
                    more += found[:max_per_target] if max_per_target is not None else found
            rows = rows + more
        return [{k: _clean(v) for k, v in r.items()} for r in rows]


def _clean(v: Any) -> Any:
    if isinstance(v, str):
        return clean_string(v)
    if isinstance(v, list):
        return [_clean(x) for x in v]
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    return v


# ---------------------------------------------------------------------- the endpoints


_REFUSALS = {
    "deleted": "The user {t} does not exist or has been deleted",
    "private": "The user {t} has a private account",
    "under_18": "The user {t} is under 18; their data is not available",
}


def _target(kind: Kind, body: dict[str, Any]) -> Any:
    raw = body.get(kind.body_key)
    if kind.target_type == "string":
        if not isinstance(raw, str) or not raw.strip():
            raise Invalid(f"{kind.body_key} must be a non-empty string")
        return raw
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
        raise Invalid(f"{kind.body_key} must be an int64 id")
    return raw


def _page_of(
    sim: Simulator, kind: Kind, key: str, items: list[Record], cursor: int, size: int
) -> tuple[list[Record], int, bool]:
    """An index-paged slice with the flaky profile's short pages and duplicates."""
    faults = sim.faults
    n = size
    remaining = len(items) - cursor
    if remaining > 0 and faults.alternating("short_page", key, kind.endpoint):
        n = faults.rng("short_page").randrange(min(size, remaining))
    page = items[cursor : cursor + n]
    nxt = cursor + len(page)
    if cursor > 0 and page and faults.fires("duplicate"):
        faults.note("duplicate", kind.endpoint)
        page = [items[cursor - 1], *page]
    return page, nxt, nxt < len(items)


def _list_key(sim: Simulator, kind: Kind) -> str:
    """The list key of this answer: the spellings the reference pages show take turns."""
    keys = kind.list_keys
    return keys[0] if len(keys) == 1 else sim.rng.choice(keys)


def _control(sim: Simulator, records: list[Record], keys: tuple[str, ...]) -> list[Record]:
    """Control characters inside strings, at the flaky profile's rate (clients clean them)."""
    out = []
    for r in records:
        if sim.faults.fires("control_chars"):
            sim.faults.note("control_chars")
            r = dict(r)
            for k in keys:
                v = r.get(k)
                if isinstance(v, str):
                    i = sim.faults.rng("control_chars").randrange(len(v) + 1)
                    r[k] = v[:i] + "\x01" + v[i:]
        out.append(r)
    return out


def _handler(kind: Kind) -> Callable[[Simulator, web.Request], Any]:
    async def handle(sim: Simulator, request: web.Request) -> web.Response:
        corpus: EnrichCorpus = sim.enrich
        try:
            body = await read_json(request)
            size = body_int(body, "max_count", 20, 1, kind.max_count) or 20
            if kind.name == "comments" and "comment_id" in body:
                if "video_id" in body:
                    raise Invalid("give video_id or comment_id, not both")
                target: Any = _target(kind, {"video_id": body["comment_id"]})
                reply_to: int | None = int(target)
            else:
                target, reply_to = _target(kind, body), None
            cursor = body_int(body, "cursor", None, 0, 2**63 - 1)
            if kind.fields_param:
                asked = [f for f in request.query.get("fields", "").split(",") if f.strip()]
                unknown = [f for f in asked if f.strip() not in kind.field_names]
                if not asked or unknown:
                    raise Invalid(f"Invalid fields: {','.join(unknown) or '(none)'}")
        except (BadBody, Invalid) as e:
            return error(400, "invalid_params", str(e), sim.log_id())
        ledger = sim.follow_ledger if kind.pool == "followers" else sim.ledger
        if reply_to is not None:
            if corpus.comment(reply_to) is None:
                msg = f"Comment {reply_to} does not exist"
                return error(400, "invalid_params", msg, sim.log_id())
            items: list[Record] = corpus.replies_as_of(reply_to, sim.clock.now())
            verdict = "ok"
        else:
            verdict = corpus.verdict(
                kind, clean_string(target) if isinstance(target, str) else target
            )
            items = [] if verdict != "ok" else corpus.records(kind, _key(target), times=True)
        if verdict != "ok":
            sim.faults.note(f"target_{verdict}", kind.endpoint)
            what = (
                "The video"
                if kind.name == "comments"
                else ("The playlist" if kind.name == "playlists" else "The user")
            )
            msg = _REFUSALS[verdict].format(t=target).replace("The user", what)
            return error(400, "invalid_params", msg, sim.log_id())
        key = f"{kind.name}:{target}:{reply_to}"
        data: dict[str, Any]
        if kind.flat:
            data = dict(items[0])
            sent = 1
        elif kind.paging == "none":
            data = {_list_key(sim, kind): items}
            sent = len(items)
        elif kind.paging == "index":
            start = cursor or 0
            limit = len(items)
            if kind.name == "comments":
                limit = min(limit, COMMENT_CEILING)
            page, nxt, more = _page_of(sim, kind, key, items[:limit], start, size)
            sent = len(page)
            if kind.name == "playlists":
                meta = sim.enrich.playlist(int(target))
                data = {
                    k: meta[k]
                    for k in (
                        "playlist_id",
                        "playlist_name",
                        "playlist_item_total",
                        "playlist_last_updated",
                    )
                }
                data |= {"playlist_video_ids": [r["video_id"] for r in page]}
            else:
                data = {_list_key(sim, kind): page}
            data |= {"cursor": nxt, "has_more": more}
        else:  # time: newest first, "on or before" the cursor
            before = int(sim.clock.now()) if cursor is None else cursor
            times = [_time(kind, r) for r in items]
            start = next((i for i, t in enumerate(times) if t <= before), len(items))
            page, nxt_i, more = _page_of(sim, kind, key, items, start, size)
            sent = len(page)
            nxt = times[nxt_i - 1] - 1 if nxt_i > start else before
            data = {
                _list_key(sim, kind): [_strip(r) for r in page],
                "cursor": nxt,
                "has_more": more,
            }
        if not kind.flat and kind.name != "playlists":
            lk = next(k for k in data if k in kind.list_keys)
            data[lk] = _control(sim, _project(kind, data[lk], request), _strings(kind))
        elif kind.flat:
            data = _project(kind, [data], request)[0]
        ledger.count_records(sent)
        sim.stats.records_delivered += sent
        return ok(data, sim.log_id())

    return handle


def _key(target: Any) -> Any:
    return clean_string(target) if isinstance(target, str) else target


def _time(kind: Kind, r: Record) -> int:
    return int(r["_time"]) if "_time" in r else int(r["create_time"])


def _strip(r: Record) -> Record:
    return {k: v for k, v in r.items() if k != "_time"}


def _strings(kind: Kind) -> tuple[str, ...]:
    return tuple(n for n, t in kind.fields if getattr(t, "name", None) == "string")


def _project(kind: Kind, records: list[Record], request: web.Request) -> list[Record]:
    if not kind.fields_param:
        return [_strip(r) for r in records]
    asked = [f.strip() for f in request.query.get("fields", "").split(",") if f.strip()]
    return [{f: r[f] for f in asked if f in r} for r in records]


def routes(sim: Simulator) -> Iterator[tuple[str, str, str, Callable[..., Any]]]:
    """(path, endpoint name, pool, handler) of every enrichment endpoint."""
    for kind in KINDS.values():
        yield kind.endpoint, f"rest.{kind.name}", kind.pool, _handler(kind)


def add_routes(app: web.Application, sim: Simulator) -> None:
    for path, name, pool, handler in routes(sim):
        ledger = sim.follow_ledger if pool == "followers" else sim.ledger
        app.router.add_post(path, sim.research(name, handler, ledger=ledger))

    async def expected(request: web.Request) -> web.Response:
        """`/_sim/enrich/expected`: the oracle for a subprocess simulator (no token, never
        counted): {kind, targets, max_per_target?, replies?, as_of?} -> rows and verdicts by
        target."""
        try:
            body = await read_json(request)
            name = body.get("kind")
            targets = body.get("targets")
            if not isinstance(name, str) or name not in KINDS or not isinstance(targets, list):
                raise BadBody("give kind (an enrichment kind) and targets (a list)")
            cap = body.get("max_per_target")
            rows: dict[str, Any] = {}
            verdicts: dict[str, str] = {}
            for t in targets:
                got = sim.enrich.expected(
                    name,
                    t,
                    max_per_target=cap,
                    replies=bool(body.get("replies")),
                    as_of=body.get("as_of"),
                )
                if isinstance(got, str):
                    verdicts[str(t)] = got
                else:
                    rows[str(t)] = got
        except BadBody as e:
            return json_response({"error": str(e)}, 400)
        return json_response({"rows": rows, "verdicts": verdicts})

    app.router.add_post("/_sim/enrich/expected", expected)
