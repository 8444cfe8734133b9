"""`[[enrich]]` blocks: resolved paths beside the videos, and every mistake one line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harvester import ConfigError
from harvester.config import Study, loads_study
from harvester.kinds import KINDS

STUDY = """
[study]
name = "nl"
source = "research-api"
start_date = "2023-01-01"
end_date = "2023-01-31"
fields = ["id", "create_time", "username", "comment_count"]
query = {and = [{operation = "EQ", field_name = "region_code", field_values = ["NL"]}]}

[api]
base_url = "http://127.0.0.1:8765"

[output]
path = "data/nl-election"
"""


def load(tmp_path: Path, blocks: str) -> Study:
    path = tmp_path / "study.toml"
    text = STUDY + blocks
    path.write_text(text)
    return loads_study(text, path)


def test_datasets_default_to_siblings_named_after_the_video_folder(tmp_path: Path) -> None:
    study = load(
        tmp_path,
        """
[[enrich]]
kind = "comments"
where = "comment_count >= 5"
max_per_target = 200
replies = true

[[enrich]]
kind = "users"

[[enrich]]
kind = "followers"
path = "elsewhere/nl-followers"
""",
    )
    e = study.enrichments
    data = tmp_path / "data"
    assert [x.output_path for x in e] == [
        data / "nl-election.comments",
        data / "nl-election.users",
        tmp_path / "elsewhere" / "nl-followers",
    ]
    assert (e[0].kind, e[0].where, e[0].max_per_target, e[0].replies) == (
        "comments",
        "comment_count >= 5",
        200,
        True,
    )


def test_enrichments_do_not_change_the_fingerprint(tmp_path: Path) -> None:
    plain = load(tmp_path, "")
    enriched = load(tmp_path, '\n[[enrich]]\nkind = "users"\n')
    assert plain.fingerprint() == enriched.fingerprint()


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            'kind = "likes"',
            "enrich[0].kind: \"likes\" is not allowed; use 'comments', 'users'",
        ),
        ('kind = "users"\nreplies = true', "enrich[0].replies: applies to comments only"),
        ('kind = "comments"\nmax_per_target = 0', "enrich[0].max_per_target: 0 is too small"),
        ('kind = "playlists"', "enrich[0].kind: playlists needs the videos' playlist_id; add"),
        ('kind = "users"\npath = "data/nl-election/users"', "enrich[0].path: "),
        ('kind = "users"\nwhere = " "', "enrich[0].where: is empty"),
        ('kind = "users"\nwehre = "x"', 'enrich[0].wehre: unknown key; did you mean "where"?'),
    ],
)
def test_every_mistake_is_one_line(tmp_path: Path, block: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "\n[[enrich]]\n" + block + "\n")
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith("study.toml: ") and message in text, text


def test_two_blocks_cannot_share_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"enrich\[1\]\.path: .* is also enrich\[0\]'s dataset"):
        load(tmp_path, '\n[[enrich]]\nkind = "users"\n\n[[enrich]]\nkind = "users"\n')


PYRQS = STUDY.replace('source = "research-api"', 'source = "pyrqs"').replace(
    'query = {and = [{operation = "EQ", field_name = "region_code", field_values = ["NL"]}]}',
    'condition_groups = [{operator = "and", conditions = [{field = "region_code", '
    'operator = "eq", field_values = ["NL"]}]}]',
)


def test_a_pyrqs_study_enriches_every_kind_with_a_vce_category(tmp_path: Path) -> None:
    blocks = "".join(f'\n[[enrich]]\nkind = "{k}"\n' for k in ("comments", "users", "followers"))
    study = loads_study(PYRQS + blocks, tmp_path / "study.toml")
    assert [e.kind for e in study.enrichments] == ["comments", "users", "followers"]


def test_a_pyrqs_study_refuses_a_kind_without_a_vce_category(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No kind lacks a category today; one added without must not reach a pyrqs run."""
    monkeypatch.setitem(KINDS, "users", dataclasses.replace(KINDS["users"], category=None))
    with pytest.raises(ConfigError) as info:
        loads_study(PYRQS + '\n[[enrich]]\nkind = "users"\n', tmp_path / "study.toml")
    text = str(info.value)
    assert "\n" not in text
    assert "enrich[0].kind: users has no VCE category" in text
    assert 'source = "research-api"' in text


def test_a_study_with_its_state_in_postgres_enriches_too(tmp_path: Path) -> None:
    text = STUDY + '\n[state]\nurl = "postgresql://postgres@127.0.0.1:5432/x"\n'
    study = loads_study(text + '\n[[enrich]]\nkind = "users"\n', tmp_path / "study.toml")
    assert study.state_url == "postgresql://postgres@127.0.0.1:5432/x"
    assert [e.kind for e in study.enrichments] == ["users"]


def test_videos_in_a_bucket_with_postgres_state_enrich_into_the_bucket(tmp_path: Path) -> None:
    text = STUDY.replace('path = "data/nl-election"', 'path = "s3://lab/nl"')
    text += '\n[state]\nurl = "postgresql://postgres@127.0.0.1:5432/x"\n'
    study = loads_study(text + '\n[[enrich]]\nkind = "users"\n', tmp_path / "study.toml")
    assert [e.dataset for e in study.enrichments] == ["s3://lab/nl.users"]
    # A folder no worker but this one may reach has no shared staging area: refused.
    with pytest.raises(ConfigError) as info:
        loads_study(
            text + '\n[[enrich]]\nkind = "users"\npath = "data/users"\n', tmp_path / "study.toml"
        )
    text = str(info.value)
    assert "\n" not in text and "enrich[0].path" in text and "s3://" in text
