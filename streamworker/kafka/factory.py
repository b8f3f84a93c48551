"""Every Kafka client streamworker makes is made here, so none can miss what each needs: the
project's librdkafka logger (librdkafka's lines become structured log lines, at DEBUG, never raw
``%4|…|CONFWARN|…`` lines on stderr between the JSON ones) and a refused property reported as
one configuration error (exit 2)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import structlog

from streamworker.errors import ConfigError

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient

log = structlog.get_logger("streamworker.kafka")


class _ToStructlog(logging.Handler):
    """librdkafka's own log lines, at DEBUG: what matters surfaces as errors of the calls and as
    streamworker's own messages, and a refused connection must not flood stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        log.debug("librdkafka", message=record.getMessage())


def librdkafka_logger() -> logging.Logger:
    logger = logging.getLogger("streamworker.librdkafka")
    if not logger.handlers:
        logger.addHandler(_ToStructlog())
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
    return logger


def invalid_property(exc: Exception) -> Exception:
    """librdkafka refusing a property (unknown name, bad value) is a configuration error (exit 2)."""
    err = exc.args[0] if exc.args else None
    if err is not None and getattr(err, "name", lambda: "")() == "_INVALID_ARG":
        return ConfigError(f"Kafka property refused by librdkafka: {err.str()}")
    return exc


#: What a client needs to reach the cluster, of a consumer's configuration (what a producer or an
#: admin client would warn about, e.g. group.id, is left out).
_CONNECTION = ("bootstrap.", "security.", "sasl.", "ssl.", "oauth_cb", "socket.", "broker.", "client.dns")


def connection_conf(conf: dict[str, Any]) -> dict[str, Any]:
    """The connection settings of ``conf`` (brokers, security, SASL/TLS, the MSK IAM token callback)."""
    return {k: v for k, v in conf.items() if k.startswith(_CONNECTION)}


def _conf(conf: dict[str, Any]) -> dict[str, Any]:
    return {"logger": librdkafka_logger(), **conf}


def _needs_kafka() -> ConfigError:
    return ConfigError("Kafka needs confluent-kafka: pip install 'streamworker[kafka]'")


def consumer(conf: dict[str, Any]) -> Consumer:
    try:
        from confluent_kafka import Consumer, KafkaException
    except ImportError:
        raise _needs_kafka() from None
    try:
        return Consumer(_conf(conf))
    except KafkaException as exc:
        raise invalid_property(exc) from None


def producer(conf: dict[str, Any]) -> Producer:
    try:
        from confluent_kafka import KafkaException, Producer
    except ImportError:
        raise _needs_kafka() from None
    try:
        return Producer(_conf(conf))
    except KafkaException as exc:
        raise invalid_property(exc) from None


def admin(conf: dict[str, Any]) -> AdminClient:
    try:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient
    except ImportError:
        raise _needs_kafka() from None
    try:
        return AdminClient(_conf(conf))
    except KafkaException as exc:
        raise invalid_property(exc) from None
