"""Seeded fault injection: every misbehaviour the real APIs have shown, reproducibly.

Each fault class draws from its own random stream (seeded by the simulator's seed and the class
name), and only when its rate is above zero, so switching one class on or off leaves the sequence
of every other class unchanged. Faults that could stop a correct client for good are bounded:
500 runs have a maximum length, persistent window failures spare one-day windows, and paging faults
fire at most twice per window.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from harvester.simulator.config import FaultConfig

__all__ = ["SERVER_FAULTS", "FaultInjector"]

log = structlog.get_logger("harvester.simulator")

#: Faults decided before a research call is handled, in the order they are tried.
SERVER_FAULTS = (
    "connection_reset",
    "token_expiry",
    "rate_limited",
    "http_500",
    "gateway_timeout",
    "empty_body",
    "slow_response",
)
PER_WINDOW_LIMIT = 2

_HOSTILE_STRINGS = (
    "../../etc",
    "a/b",
    "..",
    "x" * 10_240,
    "NL\x00",
    "C:\\temp",
    "%2e%2e%2f",
    " ",
    "",
    "région=1",
    "\u202enl",
)
_CONTROL = ("\x00", "\x01", "\x1b", "\x7f", "\x0b", "\x1f", "\x08")


class FaultInjector:
    """Decides which faults fire; counts each one in `counts` (shared with the statistics)."""

    def __init__(self, seed: int, config: FaultConfig, counts: Counter[str] | None = None) -> None:
        self.seed = seed
        self.config = config
        self.counts: Counter[str] = Counter() if counts is None else counts
        self._rngs: dict[str, random.Random] = {}
        self._run_left = 0
        self._cooling = False
        self._per_window: Counter[tuple[str, str]] = Counter()
        self._silenced: set[str] = set()

    def configure(self, config: FaultConfig) -> None:
        """Change rates at run time; switching 500s off also ends a run in progress."""
        self.config = config
        if config.http_500 <= 0:
            self._run_left = 0

    def rng(self, kind: str) -> random.Random:
        r = self._rngs.get(kind)
        if r is None:
            r = self._rngs[kind] = random.Random(f"fault:{self.seed}:{kind}")
        return r

    def fires(self, kind: str) -> bool:
        """Draw for `kind` (only when its rate is above zero)."""
        rate: float = getattr(self.config, kind)
        return rate > 0 and self.rng(kind).random() < rate

    def note(self, kind: str, endpoint: str = "", n: int = 1) -> None:
        self.counts[kind] += n
        if endpoint:
            log.info("simulator.fault", kind=kind, endpoint=endpoint)

    def server_fault(self, endpoint: str) -> str | None:
        """The transport/server fault for this call, if any. 500s come in runs."""
        if self._run_left > 0:
            self._run_left -= 1
            self.note("http_500", endpoint)
            return "http_500"
        cooling, self._cooling = self._cooling, False
        for kind in SERVER_FAULTS:
            if kind == "http_500" and cooling:
                continue  # a run is always followed by a call free of 500s: runs stay bounded
            if self.fires(kind):
                if kind == "http_500":
                    self._run_left = self.rng(kind).randint(1, self.config.http_500_max_run) - 1
                    self._cooling = True
                self.note(kind, endpoint)
                return kind
        return None

    def bounded(self, kind: str, window: str, endpoint: str) -> bool:
        """`kind` fires for this window, at most PER_WINDOW_LIMIT times over its life."""
        if self._per_window[(kind, window)] >= PER_WINDOW_LIMIT or not self.fires(kind):
            return False
        self._per_window[(kind, window)] += 1
        self.note(kind, endpoint)
        return True

    def once(self, kind: str, window: str, endpoint: str) -> bool:
        """`kind` fires at most once for this window: a client that asks again sees the truth."""
        key = f"{kind}:{window}"
        if key in self._silenced or not self.fires(kind):
            return False
        self._silenced.add(key)
        self.note(kind, endpoint)
        return True

    def alternating(self, kind: str, key: str, endpoint: str) -> bool:
        """`kind` fires, but never on two consecutive pages of one search: paging progresses."""
        last = f"{kind}:{key}"
        if last in self._silenced:
            self._silenced.discard(last)
            return False
        if not self.fires(kind):
            return False
        self._silenced.add(last)
        self.note(kind, endpoint)
        return True

    def poisoned(self, start: int, end: int, endpoint: str) -> bool:
        """The window [start, end) (epoch seconds) touches the poisoned range."""
        c = self.config
        if c.poison_end <= c.poison_start or not (start < c.poison_end and c.poison_start < end):
            return False
        self.note("poison_window", endpoint)
        return True

    def bad_day(self, day: int) -> bool:
        rate = self.config.window_failure
        return rate > 0 and random.Random(f"bad-day:{self.seed}:{day}").random() < rate

    def window_fails(
        self, first_day: int, last_day: int, endpoint: str, matches: Callable[[], int]
    ) -> bool:
        """Windows longer than one day that touch a bad day fail most of the time when they
        match many videos (`matches()` is asked only for such a window), less when fewer."""
        c = self.config
        if last_day <= first_day or c.window_failure <= 0:
            return False
        if not any(self.bad_day(d) for d in range(first_day, last_day + 1)):
            return False
        share = min(1.0, matches() / c.window_failure_matches) if c.window_failure_matches else 1.0
        if self.rng("window_failure").random() >= c.window_failure_prob * share:
            return False
        self.note("window_failure", endpoint)
        return True

    def pick(self, kind: str, k: int, population: int) -> list[int]:
        """`k` distinct indices below `population` from `kind`'s stream."""
        return self.rng(kind).sample(range(population), min(k, population))

    # ------------------------------------------------------------------ records

    def mutate_records(self, records: list[dict[str, Any]], fields: Iterable[str]) -> None:
        """Corrupt projected records in place, per the record-level rates."""
        c = self.config
        if not (c.control_chars or c.hostile_values or c.wrong_types or c.missing_fields) and not (
            c.extra_fields or c.field_variants
        ):
            return
        wanted = tuple(fields)
        for rec in records:
            if self.fires("control_chars"):
                self.counts["control_chars"] += 1
                self._control(rec)
            if self.fires("hostile_values"):
                self.counts["hostile_values"] += 1
                self._hostile(rec)
            if self.fires("wrong_types"):
                self.counts["wrong_types"] += 1
                self._wrong_types(rec)
            if self.fires("missing_fields"):
                droppable = [f for f in wanted if f not in ("id", "create_time") and f in rec]
                if droppable:
                    self.counts["missing_fields"] += 1
                    del rec[self.rng("missing_fields").choice(droppable)]
            if self.fires("extra_fields"):
                self.counts["extra_fields"] += 1
                r = self.rng("extra_fields")
                rec[f"unannounced_{r.randrange(100)}"] = r.choice((1, "x", None, [1], {"a": 1}))
            if self.fires("field_variants") and self._variant(rec):
                self.counts["field_variants"] += 1

    def _variant(self, rec: dict[str, Any]) -> bool:
        """One field of `rec` in another shape the documentation shows; False if it has none
        of those fields. Values are copied: the corpus's own records are shared."""
        r = self.rng("field_variants")
        choices = []
        tags = rec.get("video_tag")
        if isinstance(tags, list) and len(tags) == 1:
            choices.append("tag_struct")
        if "favorites_count" in rec:
            choices.append("favourites")
        if isinstance(rec.get("video_label"), dict):
            choices.append("label_key")
        effects = rec.get("effect_info_list")
        if isinstance(effects, list) and effects:
            choices.append("effect_key")
        if not choices:
            return False
        kind = r.choice(choices)
        if kind == "tag_struct":
            rec["video_tag"] = dict(tags[0])  # type: ignore[index]
        elif kind == "favourites":
            rec["favourites_count"] = rec.pop("favorites_count")
        elif kind == "label_key":
            rec["video_label"] = {**rec["video_label"], "label_id": r.randrange(1, 9)}
        else:
            first = {**effects[0], "effect_type": r.choice(("filter", "sticker"))}  # type: ignore[index]
            rec["effect_info_list"] = [first, *effects[1:]]  # type: ignore[index]
        return True

    def _control(self, rec: dict[str, Any]) -> None:
        r = self.rng("control_chars")
        for key in ("username", "video_description", "voice_to_text"):
            v = rec.get(key)
            if isinstance(v, str):
                i = r.randrange(len(v) + 1)
                rec[key] = v[:i] + r.choice(_CONTROL) + v[i:]

    def _hostile(self, rec: dict[str, Any]) -> None:
        r = self.rng("hostile_values")
        for key in ("region_code", "username"):
            if key in rec:
                rec[key] = r.choice(_HOSTILE_STRINGS)

    def _wrong_types(self, rec: dict[str, Any]) -> None:
        r = self.rng("wrong_types")
        for key in ("like_count", "view_count", "comment_count", "share_count"):
            if isinstance(rec.get(key), int) and r.random() < 0.5:
                rec[key] = str(rec[key])
        if "username" in rec and r.random() < 0.5:
            rec["username"] = r.randrange(10**6)
        for key in ("hashtag_names", "effect_ids", "hashtag_info_list", "video_mention_list"):
            if key in rec and r.random() < 0.5:
                rec[key] = None
