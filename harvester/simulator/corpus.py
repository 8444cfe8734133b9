"""The simulated TikTok: a deterministic, lazily generated corpus of videos.

Each UTC day is generated on demand from `(seed, day)` alone and kept in a small LRU, so a corpus
of years costs nothing until asked and the same seed always yields the same videos. Per-record work
is kept to a few random draws: the expensive parts (descriptions, hashtag and effect lists, nested
objects) come from pools built once per corpus and shared between records.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from harvester.plan.windows import DAY

__all__ = [
    "DAY",
    "HASHTAGS",
    "REGIONS",
    "Corpus",
    "Day",
    "day_of",
    "epoch",
    "grown",
    "indexed_at",
]

Video = dict[str, Any]
INT64_MAX = 2**63 - 1

#: Region codes with rough weights; the research audience is European and American. All from
#: the codebook's list, and no Canada: the Research Tools' data leaves it out.
REGIONS: Mapping[str, float] = {
    "US": 20, "NL": 12, "DE": 10, "GB": 9, "FR": 8, "ES": 5, "IT": 5, "BE": 4, "PL": 3, "SE": 2,
    "IE": 3, "BR": 4, "MX": 3, "JP": 2, "IN": 2, "TR": 2, "ID": 2, "AU": 2, "NG": 1, "EG": 1,
}  # fmt: skip

HASHTAGS: tuple[str, ...] = (
    "fyp", "foryou", "foryoupage", "tiktok", "viral", "trending", "news", "election",
    "elections2024", "politics", "vote", "climate", "climatechange", "football", "soccer", "music",
    "dance", "comedy", "funny", "food", "recipe", "travel", "fashion", "beauty", "makeup", "gaming",
    "pets", "dog", "cat", "fitness", "gym", "art", "diy", "science", "history", "books", "booktok",
    "learnontiktok", "duet", "challenge", "love", "family", "school", "study", "motivation",
    "nature", "photography", "cars", "tech", "ai", "crypto", "finance", "health", "mentalhealth",
    "protest", "ukraine", "gaza", "europe", "amsterdam", "berlin", "paris", "london", "newyork",
    "café", "straße", "日本", "한국", "привет", "مرحبا", "हिंदी", "ñandú", "olympics", "worldcup",
)  # fmt: skip

_WORDS: tuple[str, ...] = (
    "the", "a", "my", "new", "best", "today", "when", "this", "is", "why", "how", "watch", "wait",
    "for", "it", "again", "never", "always", "story", "time", "day", "night", "vote", "debate",
    "election", "news", "update", "live", "tiktok", "video", "friends", "über", "naïve", "déjà",
    "vu", "façade", "smörgåsbord", "jalapeño", "日本語", "東京", "서울", "Москва", "القاهرة",
    "😂", "🔥", "❤️", "🙏", "✨", "🇳🇱", "👀", "💯", "lol", "omg", "pov:", "part", "2", "3",
)  # fmt: skip

_LABELS = ("", "", "", "", "Sensitive content", "Unverified content", "Election information")
#: `video_tag` values as the API reference defines them: (number, type).
_TAGS = (
    (1, "AIGC Type"),
    (2, "AIGC Type"),
    (1, "Branded Type"),
    (7, "Branded Type"),
    (1, "AIGC Type"),
)


def _stats(rng: random.Random) -> tuple[int, int, int, int, int, int, int]:
    """Heavy-tailed counts that agree with each other, and a duration with its bucket."""
    r = rng.random
    u = r()
    views = int(20 / (1.0 - u) ** 2.2)
    if u > 0.998:
        views += 2**31  # a few beyond int32, as on the real platform
    views = min(views, INT64_MAX >> 2)
    likes = int(views * r() * 0.12)
    duration = int(3 + 600 * r() ** 4)
    dtype = 1 if duration < 15 else 2 if duration < 60 else 3 if duration < 300 else 4
    return (
        views,
        likes,
        int(likes * r() * 0.05),
        int(likes * r() * 0.03),
        int(likes * r() * 0.08),
        duration,
        dtype,
    )


@dataclass(frozen=True, slots=True)
class Day:
    """One UTC day's videos, sorted by id (and so by create_time)."""

    day: int  # days since the epoch
    ids: tuple[int, ...]
    videos: tuple[Video, ...]

    def find(self, video_id: int) -> Video | None:
        i = bisect.bisect_left(self.ids, video_id)
        return self.videos[i] if i < len(self.ids) and self.ids[i] == video_id else None


def day_of(epoch: int) -> int:
    return epoch // DAY


def _epoch_day(d: date) -> int:
    return (d - date(1970, 1, 1)).days


class _Pools:
    """Values shared by every record of a seed, built once: the per-record work only picks."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(f"corpus-pools:{seed}")

        def username(i: int) -> str:
            stem = rng.choice(("user", "the", "real", "its", "daily", "sim", "nl", "x"))
            name = f"{stem}{rng.choice(_WORDS).strip(':')}{i}".replace(" ", "")
            # A few creators carry a NUL byte in their name, as the real API has been seen to.
            return name[:3] + "\x00" + name[3:] if i % 977 == 13 else name

        self.usernames = tuple(username(i) for i in range(20_000))
        self.region_codes = tuple(REGIONS)
        self.region_cum = list(itertools.accumulate(REGIONS.values()))
        self.music_ids = tuple(
            (1_600_000_000 + rng.randrange(200_000_000)) << 32 | rng.getrandbits(32)
            for _ in range(5_000)
        )
        self.sentences = tuple(
            " ".join(rng.choices(_WORDS, k=rng.randint(2, 12))) for _ in range(2_048)
        )
        # Hashtag sets and the hashtag half of a description, which must agree with them.
        tag_sets: list[tuple[list[str], list[dict[str, Any]], str]] = []
        weights = [1.0 / (i + 1) ** 0.7 for i in range(len(HASHTAGS))]
        for _ in range(4_096):
            k = rng.choices((0, 1, 2, 3, 4, 6), weights=(15, 20, 25, 20, 12, 8))[0]
            names = list(dict.fromkeys(rng.choices(HASHTAGS, weights=weights, k=k)))
            infos = [
                {
                    "hashtag_id": HASHTAGS.index(n) + 1_000_000_000_000_000_000 * 7,
                    "hashtag_name": n,
                    "hashtag_description": f"Videos about {n}" if rng.random() < 0.5 else "",
                }
                for n in names
            ]
            tag_sets.append((names, infos, " ".join("#" + n for n in names)))
        self.tag_sets = tuple(tag_sets)
        effects: list[tuple[list[str], list[dict[str, str]]]] = [([], [])] * 12
        for _ in range(256):
            ids = [str(rng.randrange(100_000, 9_999_999)) for _ in range(rng.randint(1, 3))]
            effect_infos: list[dict[str, str]] = [
                {
                    "effect_id": e,
                    "effect_name": f"Effect {e[-3:]}",
                    "effect_photo_url": f"https://effects.sim.invalid/{e}.png",
                }
                for e in ids
            ]
            effects.append((ids, effect_infos))
        self.effects = tuple(effects)
        stickers: list[list[dict[str, str]]] = [[]] * 8
        for _ in range(128):
            sid = str(rng.randrange(10**9, 10**10))
            stickers.append([{"sticker_id": sid, "sticker_name": rng.choice(_WORDS)}])
        self.stickers = tuple(stickers)
        self.labels = tuple({"content": c} for c in _LABELS)
        tags: list[list[dict[str, Any]]] = [[]] * 6
        for _ in range(64):
            rng.randint(1, 9)  # drawn as before the documented tags: the corpus stays the same
            number, kind = rng.choice(_TAGS)
            tags.append([{"number": number, "type": kind}])
        self.tags = tuple(tags)
        mentions: list[list[str]] = [[]] * 12
        for _ in range(256):
            mentions.append(["@" + u.replace("\x00", "") for u in rng.sample(self.usernames, 2)])
        self.mentions = tuple(mentions)
        self.voice = ("",) * 3 + tuple(rng.sample(self.sentences, 256))
        self.playlist_ids = (0,) * 16 + tuple(
            7_000_000_000_000_000_000 + rng.getrandbits(60) % 10**18 for _ in range(64)
        )
        self.stats = tuple(_stats(rng) for _ in range(1 << 14))
        self.extras = tuple(
            (
                *rng.choice(self.effects),
                rng.choice(self.playlist_ids),
                rng.choice(self.voice),
                rng.choice(self.stickers),
                rng.choice(self.labels),
                rng.choice(self.tags),
                rng.choice(self.mentions),
                "" if rng.random() < 0.9 else str(rng.getrandbits(40)),
                rng.random() < 0.03,
            )
            for _ in range(1 << 12)
        )


@functools.lru_cache(maxsize=8)
def _pools(seed: int) -> _Pools:
    return _Pools(seed)


class Corpus:
    """All videos of a seed between `start` (inclusive) and `end` (exclusive), by UTC day."""

    def __init__(
        self,
        seed: int,
        *,
        videos_per_day: int = 300,
        start: date = date(2022, 1, 1),
        end: date = date(2025, 1, 1),
        cache_days: int = 64,
        cache_records: int = 150_000,
        lag: bool = False,
        now: Callable[[], float] | None = None,
    ) -> None:
        self.seed = seed
        #: TikTok's indexing lag and settling counts (research-tools-facts.md, fact 3): a video
        #: reaches the search index up to 48 h after its creation, and its counts grow to their
        #: final values over its first 10 days. Off, every video is indexed and settled at once.
        self.lag = lag
        self.now = now or time.time
        self.videos_per_day = videos_per_day
        self.first_day = _epoch_day(start)
        self.end_day = _epoch_day(end)
        self._cache: OrderedDict[int, Day] = OrderedDict()
        # Bounded by days and by records (about 1 KB each), whichever binds first.
        self._cache_days = max(1, cache_days)
        self._cache_records = cache_records
        self._cached_records = 0
        self.pools = _pools(seed)

    # ------------------------------------------------------------------ days
    def count_on(self, day: int) -> int:
        """How many videos `day` has: varies by weekday and seeded noise, with rare busy days."""
        if not self.first_day <= day < self.end_day:
            return 0
        r = random.Random(f"count:{self.seed}:{day}").random()
        weekday = (day + 3) % 7  # 0 = Monday
        factor = (0.6 + 0.8 * r) * (1.2 if weekday >= 5 else 1.0)
        if r > 0.97:
            factor *= 3
        return max(0, round(self.videos_per_day * factor))

    def day(self, day: int) -> Day:
        cached = self._cache.get(day)
        if cached is not None:
            self._cache.move_to_end(day)
            return cached
        generated = self._generate(day)
        self._cache[day] = generated
        self._cached_records += len(generated.ids)
        while len(self._cache) > 1 and (
            len(self._cache) > self._cache_days or self._cached_records > self._cache_records
        ):
            _, evicted = self._cache.popitem(last=False)
            self._cached_records -= len(evicted.ids)
        return generated

    def days(self, start: int, end: int) -> Iterator[Day]:
        """The days holding create_time in [start, end), ascending."""
        lo = max(day_of(start), self.first_day)
        hi = min(day_of(end - 1), self.end_day - 1)
        for d in range(lo, hi + 1):
            yield self.day(d)

    def videos(self, start: int, end: int, *, as_of: float | None = None) -> Iterator[Video]:
        """Every video with create_time in [start, end), by ascending id; with the indexing
        lag, only those the index holds at `as_of` (now by default)."""
        if self.lag:
            now = self.now() if as_of is None else as_of
            end = min(end, int(now) + 1)
            for v in self._videos(start, end):
                if indexed_at(v["id"]) <= now:
                    yield v
            return
        yield from self._videos(start, end)

    def _videos(self, start: int, end: int) -> Iterator[Video]:
        for d in self.days(start, end):
            if d.day * DAY >= start and (d.day + 1) * DAY <= end:
                yield from d.videos
            else:
                for v in d.videos:
                    if start <= v["create_time"] < end:
                        yield v

    def get(self, video_id: int) -> Video | None:
        create_time = video_id >> 32
        return self.day(day_of(create_time)).find(video_id)

    def lookup(self, ids: Sequence[int], *, as_of: float | None = None) -> list[Video]:
        """The videos of `ids` as the API shows them at `as_of` (now by default): with the lag
        on, a young video's counts are still growing towards their final values."""
        out = []
        now = (self.now() if as_of is None else as_of) if self.lag else 0.0
        for i in ids:
            v = self.get(i)
            if v is not None:
                out.append(grown(v, now) if self.lag else v)
        return out

    def _generate(self, day: int) -> Day:
        n = self.count_on(day)
        rng = random.Random(f"day:{self.seed}:{day}")
        r = rng.random
        bits = rng.getrandbits
        base = day * DAY
        ids = sorted({(base + int(r() * DAY)) << 32 | bits(32) for _ in range(n)})
        p = self.pools
        users, n_users = p.usernames, len(p.usernames)
        regions, region_cum, total_w = p.region_codes, p.region_cum, p.region_cum[-1]
        musics, n_music = p.music_ids, len(p.music_ids)
        sentences, tag_sets, stats, extras = p.sentences, p.tag_sets, p.stats, p.extras
        videos: list[Video] = []
        append = videos.append
        for vid in ids:
            views, likes, comments, shares, favs, duration, dtype = stats[bits(14)]
            names, infos, tag_text = tag_sets[bits(12)]
            desc = sentences[bits(11)]
            eff_ids, eff_infos, playlist, voice, stickers, label, tags, mentions, sticker, stem = (
                extras[bits(12)]
            )
            append(
                {
                    "id": vid,
                    "create_time": vid >> 32,
                    "username": users[int(n_users * r() ** 2)],
                    "region_code": regions[bisect.bisect(region_cum, r() * total_w)],
                    "video_description": f"{desc} {tag_text}" if tag_text else desc,
                    "music_id": musics[int(n_music * r() ** 3)],
                    "like_count": likes,
                    "comment_count": comments,
                    "share_count": shares,
                    "view_count": views,
                    "effect_ids": eff_ids,
                    "hashtag_names": names,
                    "playlist_id": playlist,
                    "voice_to_text": voice,
                    "duration_type": dtype,
                    "favorites_count": favs,
                    "is_stem_verified": stem,
                    "stem_verified": stem,
                    "video_duration": duration,
                    "hashtag_info_list": infos,
                    "sticker_info_list": stickers,
                    "effect_info_list": eff_infos,
                    "video_mention_list": mentions,
                    "video_label": label,
                    "video_tag": tags,
                    "video_sticker_id": sticker,
                }
            )
        return Day(day, tuple(ids), tuple(videos))


#: Fact 3: indexed up to 48 hours late; counts settle within 10 days.
INDEX_LAG = 48 * 3600
SETTLE = 10 * DAY
_COUNTS = ("view_count", "like_count", "comment_count", "share_count", "favorites_count")


def indexed_at(video_id: int) -> int:
    """When the video reaches the search index: its creation plus a lag of up to 48 h,
    drawn from its id (the same every time), on the hour (the index is updated in batches;
    it also keeps a harvest and its oracle in agreement within an hour)."""
    mixed = (video_id * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    at = (video_id >> 32) + (mixed >> 16) % (INDEX_LAG - 3600)
    return (at // 3600 + 1) * 3600


def grown(video: Video, now: float) -> Video:
    """`video` with its counts as they stand `now`: a fifth at creation, growing linearly to
    the final values at 10 days, updated hourly (a copy; settled videos are returned as
    they are)."""
    age = (now - video["create_time"]) // 3600 * 3600
    if age >= SETTLE:
        return video
    share = 0.2 + 0.8 * max(0.0, age) / SETTLE
    out = dict(video)
    for name in _COUNTS:
        out[name] = int(video[name] * share)
    return out


def epoch(d: date) -> int:
    """00:00 UTC of `d` in epoch seconds."""
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())
