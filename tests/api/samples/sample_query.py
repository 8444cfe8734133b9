from harvester import rqs
import time
from datetime import datetime, timedelta
import json

category = 'video'
fields = 'username,like_count,hashtag_info_list,sticker_info_list,video_sticker_id,video_mention_list,video_label'
limit = 100
client = rqs.RQSClient()
condition_groups = [
        {
            "operator": "and",
            "conditions": [
                {
                    "field": "video_description",
                    "operator": "LIKE",
                    "field_values": ["%tiktok%"]
                },
                {
                    "field": "hashtag_names",
                    "operator": "CONTAINS",
                    "field_values": ["tiktok"]
                }
            ]
        }
]
data = client.query(category=category, condition_groups=condition_groups, fields=fields, limit=limit)
print(data)
