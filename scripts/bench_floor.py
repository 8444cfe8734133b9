"""The CPU floor for `make bench`: the least work that turns RQS result pages into Parquet.

Fetches the same windows' result pages in sequence over plain blocking HTTP, decodes each page
into one Arrow table in the study's file schema and writes one Parquet file (zstd, as the
harvester does). No state, no staging, no validation, no cleaning, no deduplication, no
partitions: what the harvester spends beyond this is its overhead.

Two decoders, the bench runs both and takes the cheaper as the floor: `orjson` (the fastest
decoder to Python objects, then Arrow's conversion from them) and `arrow` (Arrow's own JSON
reader, straight into columns of the study's types).

    python scripts/bench_floor.py <study.toml> <out.parquet> [orjson|arrow]
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
import pyarrow.json as pj
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

    def post_raw(self, verb: str, body: dict[str, Any]) -> bytes:
        """The answer's body as bytes (a success is assumed: the simulator runs `clean`)."""
        self.conn.request(
            "POST",
            f"/v2/research/query_task/{verb}/",
            body=orjson.dumps(body),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
        )
        return self.conn.getresponse().read()


def arrow_page(raw: bytes, schema: pa.Schema) -> tuple[pa.Table, int, bool]:
    """(records, next cursor, has_more) of one result body, parsed by Arrow's JSON reader."""
    envelope = pa.schema(
        [
            pa.field(
                "data",
                pa.struct(
                    [
                        pa.field("result", pa.list_(pa.struct(list(schema)))),
                        pa.field("cursor", pa.int64()),
                        pa.field("has_more", pa.bool_()),
                    ]
                ),
            )
        ]
    )
    table = pj.read_json(
        pa.py_buffer(raw),
        read_options=pj.ReadOptions(use_threads=False, block_size=len(raw) + 1),
        parse_options=pj.ParseOptions(explicit_schema=envelope, unexpected_field_behavior="ignore"),
    )
    data = table.column("data").combine_chunks()
    rows = data.field("result").flatten()
    batch = pa.RecordBatch.from_arrays(rows.flatten(), schema=schema)
    records = pa.Table.from_batches([batch], schema)
    return records, data.field("cursor")[0].as_py(), bool(data.field("has_more")[0].as_py())


def main(config: str, out: str, decoder: str = "orjson") -> int:
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
                ask = {"task_id": task, "cursor": cursor, "max_count": PAGE}
                if decoder == "arrow":
                    table, cursor, more = arrow_page(api.post_raw("result", ask), schema)
                else:
                    page = api.post("result", ask)
                    table = pa.Table.from_pylist(page["result"], schema=schema)
                    cursor, more = page["cursor"], page["has_more"]
                writer.write_table(table)
                rows += table.num_rows
    print(rows)
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4) or sys.argv[3:] not in ([], ["orjson"], ["arrow"]):
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], str(Path(sys.argv[2])), *sys.argv[3:]))
