"""Adapters: the event store on PostgreSQL, Celery over RabbitMQ, the outbox relay."""
