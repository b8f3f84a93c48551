"""A per-record processor whose every record waits $RECORD_WAIT seconds (an I/O call: an HTTP
request, a database write), for benchmarks/parallelism.py. It logs one line per record (shard,
key, time) to $RECORD_LOG; streamworker checkpoints the completed records itself."""

import json
import os
import threading
import time

from streamworker import PerRecordProcessor

WAIT = float(os.environ.get("RECORD_WAIT", "0.01"))
_out = open(os.environ["RECORD_LOG"], "a", buffering=1)
_lock = threading.Lock()


class IoProcessor(PerRecordProcessor):
    def initialize(self, i):
        self.shard = i.shard_id

    def process_record(self, record):
        time.sleep(WAIT)
        line = json.dumps({"ev": "rec", "shard": self.shard, "key": record.partition_key, "t": time.time(),
                           "data": record.data.decode()})
        with _lock:
            _out.write(line + "\n")
