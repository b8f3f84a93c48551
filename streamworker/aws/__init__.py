"""AWS plumbing shared by the Kinesis source and the DynamoDB lease table: the boto3 session and
its region (AWS's environment conventions), refreshed credentials, and what each AWS error means
to the worker (retry, throttle, fatal)."""
