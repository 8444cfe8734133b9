-- `harvester aggregate configs/demo-rqs.toml configs/demo-aggregate.sql --out ...`:
-- videos per region and month with their median views; only groups of at least 10 videos leave.
SELECT region_code,
       create_month,
       count(*)                                  AS n,
       median(view_count)                        AS median_views,
       round(avg((video_duration < 15)::INT), 2) AS share_under_15s
FROM videos
GROUP BY ALL
ORDER BY region_code, create_month
