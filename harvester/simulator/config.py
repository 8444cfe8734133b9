"""The simulator's knobs: one frozen config, fault rates per class, and the named profiles.

A profile is only a preset: `SimulatorConfig.for_profile("flaky", seed=7, faults={"http_500": 0})`
starts from the preset and overrides single values, so a test can switch one fault class on or off
without restating the rest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

__all__ = [
    "FAULT_KINDS",
    "PROFILES",
    "FaultConfig",
    "Profile",
    "SimulatorConfig",
]

Profile = Literal["clean", "flaky", "quota", "hostile"]
PROFILES: tuple[Profile, ...] = ("clean", "flaky", "quota", "hostile")


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """One probability per fault class (0 = never), plus the few shapes that bound them.

    Rates are per eligible request unless noted; every fault is bounded so that a correct client
    always completes (see each field's comment).
    """

    # Transport and server faults, on every research endpoint (REST and RQS).
    http_500: float = 0.0  # starts a run of 1..http_500_max_run consecutive 500s
    gateway_timeout: float = 0.0  # 504 with an HTML body, after gateway_delay seconds
    empty_body: float = 0.0  # 502/503 with an empty body
    truncated_body: float = 0.0  # 200 whose JSON body is cut in the middle
    connection_reset: float = 0.0  # the connection is closed without an answer
    slow_response: float = 0.0  # the answer comes after slow_delay seconds
    token_expiry: float = 0.0  # 401 access_token_invalid; the token is revoked
    rate_limited: float = 0.0  # 429 rate_limit_exceeded, Retry-After 1 (bursts at high rates)
    # Public API paging faults.
    # Share of "bad" days: a window > 1 day touching one fails (500) with window_failure_prob,
    # scaled down for a window matching fewer than window_failure_matches videos (the 500s
    # come on queries that match many videos over a long date range; smaller windows fail far
    # less often: research-tools facts, fact 2).
    window_failure: float = 0.0
    search_id_rejected: float = 0.0  # 400 "Search Id … is invalid or expired" (≤ 2 per window)
    invalid_cursor: float = 0.0  # 400 "Invalid count or cursor" mid-crawl (≤ 2 per window)
    short_page: float = 0.0  # fewer than max_count videos (even 0), has_more true
    cursor_missing: float = 0.0  # `cursor` absent or null on a full page
    silent_empty: float = 0.0  # a fresh search answers no videos (once per window)
    duplicate: float = 0.0  # a video of the previous page is repeated
    fuzzy_false_positive: float = 0.0  # share of extra non-matching videos (keyword/hashtag)
    # Strings and shapes of records.
    control_chars: float = 0.0  # per record: NUL/control characters in username/description
    hostile_values: float = 0.0  # per record: path-like / huge strings in partition fields
    wrong_types: float = 0.0  # per record: string counts, int usernames, null lists
    missing_fields: float = 0.0  # per record: a requested field left out
    extra_fields: float = 0.0  # per record: unknown extra fields
    # Per record: a field in another documented shape (video_tag as one struct rather than a
    # list, `favourites_count` for favorites_count) or with a key inside a struct the catalogue
    # does not know (effect_info_list items, video_label).
    field_variants: float = 0.0
    huge_page: float = 0.0  # a public API page far larger than max_count
    # Per-target verdicts of the enrichment endpoints: shares of accounts the API refuses.
    account_private: float = 0.0  # 400 "… has a private account"
    account_deleted: float = 0.0  # 400 "… does not exist or has been deleted"
    account_under_18: float = 0.0  # 400 "… is under 18"
    # Research Query Service.
    analysis_failed: float = 0.0  # a task ends AnalysisFailed (≤ 2 per query)
    # The one unbounded fault: every research call whose window touches [poison_start,
    # poison_end) (epoch seconds; 0 = none) answers 500, so a client must give that window up
    # (park it) and finish the rest.
    poison_start: int = 0
    poison_end: int = 0
    # Shapes.
    http_500_max_run: int = 4
    window_failure_prob: float = 0.9
    window_failure_matches: int = 1_000
    gateway_delay: float = 0.05
    slow_delay: float = 2.0

    def replace(self, **changes: Any) -> FaultConfig:
        """A copy with some values changed; unknown names raise TypeError."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


FAULT_KINDS: tuple[str, ...] = tuple(
    f.name
    for f in dataclasses.fields(FaultConfig)
    if f.type == "float" and f.name not in ("window_failure_prob", "gateway_delay", "slow_delay")
)

_FAULT_PRESETS: Mapping[Profile, FaultConfig] = {
    "clean": FaultConfig(),
    "quota": FaultConfig(),
    "flaky": FaultConfig(
        http_500=0.04,
        gateway_timeout=0.01,
        empty_body=0.01,
        truncated_body=0.01,
        connection_reset=0.01,
        slow_response=0.002,
        token_expiry=0.01,
        window_failure=0.15,
        search_id_rejected=0.03,
        invalid_cursor=0.03,
        short_page=0.05,
        cursor_missing=0.03,
        silent_empty=0.01,
        duplicate=0.05,
        fuzzy_false_positive=0.05,
        control_chars=0.02,
        analysis_failed=0.05,
        account_private=0.03,
        account_deleted=0.02,
        account_under_18=0.01,
    ),
    "hostile": FaultConfig(
        field_variants=0.1,
        control_chars=0.1,
        hostile_values=0.05,
        wrong_types=0.05,
        missing_fields=0.02,
        extra_fields=0.1,
        huge_page=0.05,
    ),
}

_UNSET_FAULTS = FaultConfig()

#: Profiles in which the public API matches approximately unless told otherwise.
_APPROXIMATE: frozenset[Profile] = frozenset({"flaky", "hostile"})

#: Non-fault settings a profile changes.
_CONFIG_PRESETS: Mapping[Profile, Mapping[str, Any]] = {
    "quota": {"daily_requests": 40, "daily_records": 2_000, "quota_grace": 300.0},
}


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Everything that decides the simulator's answers. Same config, same answers."""

    seed: int = 0
    profile: Profile = "clean"
    #: Base latency of every answer in seconds, with ±20 % seeded jitter.
    latency: float = 0.0
    rqs_created: float = 0.02
    rqs_validating: float = 0.05
    rqs_processing: float = 0.2
    max_running_tasks: int = 5
    daily_requests: int = 1_000
    daily_records: int = 100_000
    #: After 00:00 UTC a spent day keeps answering "quota exceeded" this many seconds.
    quota_grace: float = 0.0
    rate_limit_per_minute: int = 600
    #: The followers/following lists' own daily pool.
    follow_daily_requests: int = 20_000
    follow_daily_records: int = 2_000_000
    result_ttl: float = 86_400.0
    token_ttl: float = 7_200.0
    search_ttl: float = 3_600.0
    videos_per_day: int = 300
    start: date = date(2022, 1, 1)
    #: First day without videos (exclusive).
    end: date = date(2025, 1, 1)
    stage: Literal["execution", "test"] = "execution"
    client_key: str = "sim-client-key"
    client_secret: str = "sim-client-secret"
    #: RQS: reject bad queries at create (400); False: accept and end the task AnalysisFailed.
    validate_on_create: bool = True
    #: Generated corpus kept in memory: at most this many days and records (~1 KB each).
    cache_days: int = 64
    cache_records: int = 150_000
    #: Wall-clock epoch the simulator's clock starts at (None: the real time).
    clock_start: float | None = None
    #: The public API matches string conditions approximately (near strings too, see
    #: `harvester.simulator.fuzzy`). Left unset (None): on in the flaky and hostile profiles.
    approximate_matching: bool | None = None
    #: TikTok's 48-hour indexing lag and counts that settle over 10 days (research-tools-facts
    #: fact 3), against the simulator's clock. Left unset (None): on in the flaky and hostile
    #: profiles (with the real clock, a corpus in the past is long settled either way).
    indexing_lag: bool | None = None
    #: Left unset, the profile's preset.
    faults: FaultConfig = _UNSET_FAULTS

    def __post_init__(self) -> None:
        # `SimulatorConfig(profile="quota")` means the quota profile whichever way it is built:
        # values left at their defaults take the profile's.
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; use one of {', '.join(PROFILES)}")
        if self.faults is _UNSET_FAULTS:
            object.__setattr__(self, "faults", _FAULT_PRESETS[self.profile])
        if self.approximate_matching is None:
            object.__setattr__(self, "approximate_matching", self.profile in _APPROXIMATE)
        if self.indexing_lag is None:
            object.__setattr__(self, "indexing_lag", self.profile in _APPROXIMATE)
        for name, value in _CONFIG_PRESETS.get(self.profile, {}).items():
            if getattr(self, name) == _DEFAULTS[name]:
                object.__setattr__(self, name, value)

    @classmethod
    def for_profile(cls, profile: Profile = "clean", **overrides: Any) -> SimulatorConfig:
        """The profile's preset with `overrides`; `faults` may be a FaultConfig or a mapping of
        rates laid over the profile's own."""
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; use one of {', '.join(PROFILES)}")
        faults: Any = overrides.pop("faults", None)
        if faults is None:
            faults = _FAULT_PRESETS[profile]
        elif isinstance(faults, Mapping):
            faults = _FAULT_PRESETS[profile].replace(**faults)
        return cls(profile=profile, faults=faults, **overrides)

    def replace(self, **changes: Any) -> SimulatorConfig:
        return dataclasses.replace(self, **changes)


_DEFAULTS: Mapping[str, Any] = {
    f.name: f.default for f in dataclasses.fields(SimulatorConfig) if f.name != "faults"
}
