"""logship: a small log streaming system speaking the Kafka wire protocol."""

__version__ = "0.1.0"
