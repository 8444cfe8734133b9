"""The corpus: deterministic, realistic, lazily generated and cheap."""

from __future__ import annotations

import time
from datetime import date

from harvester.fields import CATALOGUE
from harvester.simulator.corpus import DAY, Corpus, day_of, epoch

D0 = day_of(epoch(date(2023, 3, 1)))


def test_same_seed_same_videos_and_other_seed_differs() -> None:
    a, b, c = Corpus(5), Corpus(5), Corpus(6)
    assert a.day(D0).videos == b.day(D0).videos
    assert a.day(D0).ids != c.day(D0).ids


def test_videos_carry_every_catalogue_field_with_its_type() -> None:
    v = Corpus(1).day(D0).videos[0]
    assert set(v) == set(CATALOGUE)
    for name in ("id", "create_time", "music_id", "playlist_id", "view_count", "like_count"):
        assert isinstance(v[name], int) and not isinstance(v[name], bool)
    for name in ("hashtag_names", "effect_ids", "video_mention_list"):
        assert isinstance(v[name], list) and all(isinstance(x, str) for x in v[name])
    assert isinstance(v["video_label"], dict) and "content" in v["video_label"]
    assert all({"hashtag_id", "hashtag_name", "hashtag_description"} == set(h)
               for h in v["hashtag_info_list"])  # fmt: skip
    assert v["is_stem_verified"] == v["stem_verified"]


def test_ids_are_19_digits_sorted_and_encode_create_time_inside_the_day() -> None:
    day = Corpus(2).day(D0)
    assert list(day.ids) == sorted(day.ids) and len(set(day.ids)) == len(day.ids)
    for v in day.videos:
        assert len(str(v["id"])) == 19
        assert v["id"] >> 32 == v["create_time"]
        assert D0 * DAY <= v["create_time"] < (D0 + 1) * DAY


def test_realistic_values() -> None:
    corpus = Corpus(3)
    videos = [v for d in range(D0, D0 + 60) for v in corpus.day(d).videos]
    assert any(v["view_count"] > 2**31 for v in videos)
    assert any("\x00" in v["username"] for v in videos)
    regions = [v["region_code"] for v in videos]
    assert regions.count("US") > regions.count("NL") > regions.count("EG")
    tags = {t for v in videos for t in v["hashtag_names"]}
    assert {"election", "tiktok", "fyp", "news"} <= tags
    for v in videos[:2_000]:
        for t in v["hashtag_names"]:
            assert f"#{t}" in v["video_description"]
    assert any(not v["video_description"].isascii() for v in videos)


def test_per_day_counts_vary_deterministically_and_stop_at_the_corpus_end() -> None:
    corpus = Corpus(4, videos_per_day=100, start=date(2023, 1, 1), end=date(2023, 2, 1))
    counts = [corpus.count_on(d) for d in range(D0 - 59, D0 - 28)]
    assert len(set(counts)) > 5
    assert corpus.count_on(day_of(epoch(date(2023, 2, 1)))) == 0
    assert corpus.count_on(day_of(epoch(date(2022, 12, 31)))) == 0
    assert 50 < sum(counts) / len(counts) < 200


def test_window_selection_and_lookup() -> None:
    corpus = Corpus(5, cache_days=4)
    start = D0 * DAY + 3_600
    end = (D0 + 2) * DAY + 7_200
    got = list(corpus.videos(start, end))
    assert got and all(start <= v["create_time"] < end for v in got)
    assert [v["id"] for v in got] == sorted(v["id"] for v in got)
    assert corpus.get(got[7]["id"]) is got[7]
    assert corpus.get(got[7]["id"] + 1) is None
    for d in range(D0, D0 + 10):
        corpus.day(d)
    assert len(corpus._cache) == 4  # bounded, whatever the span asked
    small = Corpus(5, cache_records=500)
    for d in range(D0, D0 + 10):
        small.day(d)
    assert sum(len(d.ids) for d in small._cache.values()) <= 500


def test_generation_is_fast_enough_for_benchmarks() -> None:
    """No timing assert (shared machines); prints the rate for the record."""
    corpus = Corpus(9, videos_per_day=5_000, cache_days=1)
    t = time.perf_counter()
    n = sum(len(corpus.day(d).videos) for d in range(D0, D0 + 20))
    rate = n / (time.perf_counter() - t)
    print(f"corpus: {n} records at {rate:,.0f} records/s")
    assert n > 50_000


def test_the_index_lags_up_to_48_hours_and_counts_settle_in_10_days() -> None:
    """Fact 3 of the Research Tools' documentation, against the corpus's clock."""
    from harvester.simulator.corpus import SETTLE, indexed_at

    now = [float((D0 + 1) * DAY)]
    lagging = Corpus(4, lag=True, now=lambda: now[0])
    settled = Corpus(4)
    start, end = D0 * DAY, (D0 + 1) * DAY
    every = [v["id"] for v in settled.videos(start, end)]
    lags = [indexed_at(i) - (i >> 32) for i in every]
    assert min(lags) > 0 and max(lags) <= 48 * 3600
    at_midnight = [v["id"] for v in lagging.videos(start, end)]
    assert 0 < len(at_midnight) < len(every)  # the day is not all indexed by its end
    assert set(at_midnight) == {i for i in every if indexed_at(i) <= now[0]}
    now[0] += 2 * DAY
    assert [v["id"] for v in lagging.videos(start, end)] == every  # all in after 48 h
    # Counts grow: a fifth at first, the final values once 10 days old; never above them.
    final = {v["id"]: v["view_count"] for v in settled.lookup(every)}
    young = {v["id"]: v["view_count"] for v in lagging.lookup(every, as_of=start + 3600)}
    assert all(young[i] <= final[i] for i in every)
    assert sum(young.values()) < sum(final.values()) / 2
    old = {v["id"]: v["view_count"] for v in lagging.lookup(every, as_of=end + SETTLE)}
    assert old == final
    # The same question asked twice within the hour gets the same answer.
    assert lagging.lookup(every[:5], as_of=end + 60) == lagging.lookup(every[:5], as_of=end + 120)
    assert settled.day(D0).videos[0]["view_count"] == final[every[0]]  # the cache is untouched
