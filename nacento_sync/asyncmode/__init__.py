"""Asynchronous mode: `submit` hands batches to RabbitMQ, `worker`s sync them through the engine.

- `submit`: validate with the feed, write Magento's bulk rows, publish (`queue`).
- `worker`: consume, batch, sync through `Engine.sync_batch`, record each operation's outcome.
- `queue`: the RabbitMQ topology, Magento's message envelope, publishing with confirms.
- `bulk`: all SQL of `magento_bulk` / `magento_operation`, the `error_code` table.
- `status`: `status` and `requeue`.
"""
