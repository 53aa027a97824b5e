"""Message-bus sources and sinks (NATS JetStream, Redis Streams, RabbitMQ streams): frames on a wire, offsets to resume."""
