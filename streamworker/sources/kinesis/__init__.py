"""Amazon Kinesis: shard readers over GetRecords (polling) and SubscribeToShard (enhanced
fan-out), the calls with their retries, and KPL de-aggregation."""
