"""Local servers for the demo, the tests, benchmarks and ``streamworker local``: moto and
kinesis-mock for AWS, Apache Kafka (from Maven Central) or the tansu stand-in for Kafka."""

from streamworker.local.apache_kafka import ApacheKafka
from streamworker.local.servers import KafkaBroker, KinesisMock, MotoServer, free_port

__all__ = ["ApacheKafka", "KafkaBroker", "KinesisMock", "MotoServer", "free_port"]
