"""boto3 sessions as streamworker makes them: like boto3's own, but response timestamps are
parsed straight to UTC datetimes.

botocore parses every timestamp into a datetime in the *local* zone through dateutil's
``tzlocal``, which costs about 3 µs each; a GetRecords reply carries one per record
(``ApproximateArrivalTimestamp``), and on a busy shard that parsing was ~30 % of a worker's CPU.
The same instant, timezone-aware in UTC, costs a tenth of that. Clients a caller passes in
(``Worker(kinesis_client=...)``) are used as they are.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import boto3
import botocore.session
import botocore.utils


def parse_timestamp(value: Any) -> datetime:
    """Epoch seconds (the JSON protocols) to a UTC datetime; anything else as botocore does."""
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    parsed: datetime = botocore.utils.parse_timestamp(value)
    return parsed


def botocore_session(profile: str | None = None) -> botocore.session.Session:
    session = botocore.session.Session(profile=profile)
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
    return session


def new_session(region: str | None = None, profile: str | None = None) -> boto3.session.Session:
    """A boto3 session over ``botocore_session``: boto3's credential chain, region and endpoints."""
    return boto3.session.Session(botocore_session=botocore_session(profile), region_name=region)
