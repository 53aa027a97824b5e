"""Message-bus sources and sinks (NATS JetStream, Redis Streams, RabbitMQ): frames on a wire, offsets to resume."""
