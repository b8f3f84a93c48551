"""An idempotent sink: at-least-once delivery becomes effectively-once storage.

Each record is stored under its natural key (shard, sequence number, sub-sequence number), so a
record delivered again after a failover overwrites itself instead of counting twice. The batch
is committed before the checkpoint: a crash between the two only causes a harmless redelivery.

Run it:  SINK_DB=/tmp/sink.sqlite streamworker run examples/idempotent_sink.py:SqliteSink \
             --stream metrics-stream --application-name sink-app --initial-position TRIM_HORIZON
"""

from __future__ import annotations

import os
import sqlite3

from streamworker import InitializationInput, ProcessRecordsInput, RecordProcessor

SCHEMA = """CREATE TABLE IF NOT EXISTS records (
    shard_id TEXT NOT NULL, sequence_number TEXT NOT NULL, sub_sequence_number INTEGER NOT NULL,
    partition_key TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (shard_id, sequence_number, sub_sequence_number))"""


class SqliteSink(RecordProcessor):
    def initialize(self, initialization_input: InitializationInput) -> None:
        self.db = sqlite3.connect(os.environ.get("SINK_DB", "sink.sqlite"), timeout=30)
        self.db.execute(SCHEMA)

    def process_records(self, process_records_input: ProcessRecordsInput) -> None:
        rows = [(r.shard_id, r.sequence_number, r.sub_sequence_number, r.partition_key, r.data)
                for r in process_records_input.records]
        with self.db:  # one transaction per batch
            self.db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?)", rows)
        process_records_input.checkpointer.checkpoint()
