"""Sans-IO Kafka wire-protocol codec: primitives, message schemas, framing.

Knows nothing of sockets or storage."""
