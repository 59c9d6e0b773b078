"""Client library for upstream systems: publish batch requests, await their results."""

from producer.client import BatchProducer, encode_request
from producer.errors import KafkaUnavailable, ResultTimeout
from producer.results import ResultListener

__all__ = ["BatchProducer", "KafkaUnavailable", "ResultListener", "ResultTimeout", "encode_request"]
