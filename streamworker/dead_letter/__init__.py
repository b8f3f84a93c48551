"""Dead letters: the sinks a failed record goes to (a JSON-lines file, a Kinesis stream, a Kafka topic, an SQS queue), a shard's
use of them, and the replay of what they hold."""
