"""The CPU floor for `make bench`: the least work that turns RQS result pages into Parquet.

Fetches the same windows' result pages in sequence over plain blocking HTTP, decodes each page
with orjson, builds one Arrow table per page in the study's file schema and writes one Parquet
file (zstd, as the harvester does). No state, no staging, no deduplication, no partitions: what
the harvester spends beyond this is its overhead.

    python scripts/bench_floor.py <study.toml> <out.parquet>
"""

from __future__ import annotations

import http.client
import os
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from harvester.config import load_study
from harvester.plan import plan_study
from harvester.sink import layout

PAGE = 10_000


class Api:
    def __init__(self, base_url: str, key: str, secret: str) -> None:
        url = urllib.parse.urlsplit(base_url)
        self.conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80)
        form = urllib.parse.urlencode(
            {"client_key": key, "client_secret": secret, "grant_type": "client_credentials"}
        )
        token = self._post(
            "/v2/oauth/token/", form.encode(), "application/x-www-form-urlencoded", raw=True
        )
        self.token = token["access_token"]

    def _post(self, path: str, body: bytes, ctype: str, *, raw: bool = False) -> Any:
        headers = {"Content-Type": ctype}
        if not raw:
            headers["Authorization"] = f"Bearer {self.token}"
        self.conn.request("POST", path, body=body, headers=headers)
        resp = self.conn.getresponse()
        answer = orjson.loads(resp.read())
        if resp.status != 200:
            raise RuntimeError(f"{path}: {resp.status} {answer}")
        return answer if raw else answer["data"]

    def post(self, verb: str, body: dict[str, Any]) -> Any:
        path = f"/v2/research/query_task/{verb}/"
        return self._post(path, orjson.dumps(body), "application/json")


def main(config: str, out: str) -> int:
    study = load_study(config)
    full = layout(study.fields, study.partition_by).file_schema
    schema = pa.schema([full.field(name) for name in study.fields])  # the API's columns only
    api = Api(
        study.api.base_url,
        os.environ["TIKTOK_CLIENT_KEY"],
        os.environ["TIKTOK_CLIENT_SECRET"],
    )
    assert study.seed_query is not None and study.limit is not None
    rows = 0
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        for shard in plan_study(study):
            query = study.seed_query.with_window(shard.window.start, shard.window.end)
            body = {
                "category": "video",
                "condition_groups": query.to_json(),
                "fields": ",".join(study.fields),
                "limit": study.limit,
            }
            task = api.post("create", body)["task_id"]
            while api.post("status", {"task_id": task})["status"] != "Completed":
                time.sleep(0.05)
            cursor, more = 0, True
            while more:
                page = api.post("result", {"task_id": task, "cursor": cursor, "max_count": PAGE})
                table = pa.Table.from_pylist(page["result"], schema=schema)
                writer.write_table(table)
                rows += table.num_rows
                cursor, more = page["cursor"], page["has_more"]
    print(rows)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], str(Path(sys.argv[2]))))
