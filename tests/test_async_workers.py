"""Worker processes under load and faults: scale-out, kill -9, a broker restart, a lost database
connection, SIGTERM. Real RabbitMQ, MariaDB and S3 (moto); workers run as `nacento-sync worker`."""

from __future__ import annotations

import logging
import re
import signal

from async_helpers import (
    PrivateBroker,
    ThreadWorker,
    async_config,
    bulk_products,
    depth,
    fast_inserts,
    put_many,
    run_submit,
    run_worker,
    slow_inserts,
    status_counts,
    wait_for,
    whole_skus,
    worker_process,
    write_config,
    writing_transactions,
)
from helpers import install_meta, write_ndjson

from nacento_sync.asyncmode.bulk import Status


def _export(store, bucket, tmp_path, prefix: str, n: int, images: int, *, upload: bool = True):
    bulk_products(store, n, prefix)
    items = [{"sku": f"{prefix}-{i:05d}", "images": [{"file_path": f"/{prefix[0].lower()}/x/{prefix}-{i}-{j}.jpg",
                                                      "roles": ["base"] if j == 0 else []} for j in range(images)]}
             for i in range(n)]
    if upload:
        put_many(bucket, [im["file_path"] for it in items for im in it["images"]])
    return write_ndjson(tmp_path / f"{prefix}.ndjson", items)


def _complete(store, bulk_uuid: str) -> int:
    return status_counts(store, bulk_uuid).get(Status.COMPLETE, 0)


def _messages_taken(log_text: str) -> int:
    m = re.search(r"worker stopped: (\d+) messages", log_text)
    assert m, log_text[-2000:]
    return int(m.group(1))


def test_three_workers_share_a_2000_sku_bulk_without_duplicates(magento_factory, bucket, db_params, queue_cfg,
                                                                  tmp_path):
    """Scale-out: three workers on one queue finish a bulk with every operation done once. (How many messages
    each takes depends on the machine: one may take them all. Throughput figures belong to bench/.)"""
    n, workers = 2000, 3
    store = magento_factory("ce")
    install_meta(store)
    export = _export(store, bucket, tmp_path, "SC", n, 1)
    cfg = async_config(store, bucket, db_params, queue_cfg, batch_size=100, concurrency=32, etag_strategy="head")
    res = run_submit(cfg, export)
    assert res.accepted == n
    config_file = write_config(tmp_path / "c.yaml", cfg)
    logs = [tmp_path / f"w{i}.log" for i in range(workers)]
    procs = [worker_process(config_file, "--idle-exit", "2", "--concurrency", "200", log_file=log) for log in logs]
    try:
        wait_for(lambda: _complete(store, res.bulk_uuid) == n, 600, interval=0.2, what=f"{n} operations")
        codes = [p.wait(120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert codes == [0] * workers, [log.read_text()[-2000:] for log in logs]
    taken = [_messages_taken(log.read_text()) for log in logs]
    assert sum(taken) >= n, taken  # redeliveries aside, each message was taken once
    assert status_counts(store, res.bulk_uuid) == {Status.COMPLETE: n}
    assert len(whole_skus(store, "SC", 1)) == n
    assert store.table_counts()["catalog_product_entity_media_gallery"] == n  # nothing inserted twice


def test_kill_9_mid_batch_redelivers_and_the_end_state_is_exact(store, bucket, db_params, queue_cfg, tmp_path):
    n = 120
    res = run_submit(async_config(store, bucket, db_params, queue_cfg),
                     _export(store, bucket, tmp_path, "KL", n, 2))
    slow_inserts(store, 0.02)  # a batch of 10 SKUs writes for ~0.4 s
    cfg = async_config(store, bucket, db_params, queue_cfg, batch_size=10)
    log = tmp_path / "w.log"
    proc = worker_process(write_config(tmp_path / "c.yaml", cfg), "--concurrency", "40", log_file=log)
    try:
        wait_for(lambda: _complete(store, res.bulk_uuid) >= 20 and writing_transactions(store) > 0, 60,
                 interval=0.02, what="a batch being written after 20 SKUs", log=log)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    fast_inserts(store)
    done = _complete(store, res.bulk_uuid)
    assert 20 <= done < n
    taken = store.query("SELECT COUNT(*) AS n FROM {magento_operation} WHERE status = 4 AND started_at IS NOT NULL")
    assert taken[0]["n"] > 0  # operations it was writing when it died
    # Its unacked messages went back to the queue (an ack still in flight when it died may be lost too:
    # then a finished operation's message comes back as well, and is acked without processing).
    back = wait_for(lambda: (d := depth(queue_cfg["url"], queue_cfg["queue"])) and d[1] == 0 and d[0] >= n - done
                    and d[0], 30, what="redelivery")
    partial = whole_skus(store, "KL", 2)  # the killed transaction left no half SKU
    assert len(partial) == done

    stats = run_worker(cfg)
    assert stats.complete == n - done and stats.complete + stats.skipped == back
    assert status_counts(store, res.bulk_uuid) == {Status.COMPLETE: n}
    assert len(whole_skus(store, "KL", 2)) == n
    assert store.table_counts()["catalog_product_entity_media_gallery"] == 2 * n


def test_workers_reconnect_when_rabbitmq_restarts_with_its_data(store, bucket, db_params, queue_cfg, tmp_path):
    broker = PrivateBroker(tmp_path / "rabbit")
    broker.start()
    try:
        n = 150
        qcfg = {**queue_cfg, "url": broker.url}
        res = run_submit(async_config(store, bucket, db_params, qcfg), _export(store, bucket, tmp_path, "RS", n, 1))
        slow_inserts(store, 0.03)
        cfg = async_config(store, bucket, db_params, qcfg, batch_size=5)
        config_file = write_config(tmp_path / "c.yaml", cfg)
        logs = [tmp_path / f"w{i}.log" for i in range(2)]
        procs = [worker_process(config_file, "--idle-exit", "2", "--concurrency", "10", log_file=log) for log in logs]
        try:
            wait_for(lambda: _complete(store, res.bulk_uuid) >= 20, 120, what="20 SKUs before the restart")
            broker.stop()  # keeps its mnesia directory: durable queues and persistent messages survive
            before = _complete(store, res.bulk_uuid)
            wait_for(lambda: all("lost the connection to RabbitMQ" in log.read_text() for log in logs), 30,
                     what="both workers to notice")
            fast_inserts(store)
            broker.start()
            codes = [p.wait(180) for p in procs]
        finally:
            for p in procs:
                p.kill()
        assert codes == [0, 0], [log.read_text()[-3000:] for log in logs]
        assert before < n
        for log in logs:
            assert "reconnected to RabbitMQ" in log.read_text()
        assert status_counts(store, res.bulk_uuid) == {Status.COMPLETE: n}
        assert len(whole_skus(store, "RS", 1)) == n
        assert store.table_counts()["catalog_product_entity_media_gallery"] == n
    finally:
        broker.stop(keep_epmd=False)


def test_worker_reconnects_to_the_database_after_losing_its_connection(store, bucket, db_params, queue_cfg,
                                                                       tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="nacento_sync")
    n = 60
    res = run_submit(async_config(store, bucket, db_params, queue_cfg), _export(store, bucket, tmp_path, "DB", n, 1))
    slow_inserts(store, 0.03)
    worker = ThreadWorker(async_config(store, bucket, db_params, queue_cfg, batch_size=5), concurrency=10)
    wait_for(lambda: _complete(store, res.bulk_uuid) >= 10 and writing_transactions(store) > 0, 60, interval=0.01,
             what="a batch being written")
    ids = store.query("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
                      (store.database,))
    for row in ids:  # what a database restart does to the worker's connections
        store.execute(f"KILL {int(row['ID'])}")
    fast_inserts(store)
    stats = worker.join()
    assert "lost the database connection" in caplog.text and "reconnected to the database" in caplog.text
    assert stats.complete + stats.skipped >= n - 10
    assert status_counts(store, res.bulk_uuid) == {Status.COMPLETE: n}
    assert len(whole_skus(store, "DB", 1)) == n


def test_sigterm_finishes_and_acks_what_is_held_then_exits_0(store, bucket, db_params, queue_cfg, tmp_path):
    n = 200
    res = run_submit(async_config(store, bucket, db_params, queue_cfg), _export(store, bucket, tmp_path, "TM", n, 1))
    slow_inserts(store, 0.02)
    cfg = async_config(store, bucket, db_params, queue_cfg, batch_size=10)
    log = tmp_path / "w.log"
    proc = worker_process(write_config(tmp_path / "c.yaml", cfg), "--concurrency", "30", log_file=log)
    try:
        wait_for(lambda: _complete(store, res.bulk_uuid) >= 20, 60, what="20 SKUs")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    finally:
        proc.kill()
    assert code == 0, log.read_text()[-2000:]
    text = log.read_text()
    assert "SIGTERM: finishing" in text
    done = _complete(store, res.bulk_uuid)
    assert 20 <= done < n  # it stopped taking messages
    started = store.query("SELECT COUNT(*) AS n FROM {magento_operation} WHERE started_at IS NOT NULL")[0]["n"]
    assert started == done  # everything it took, it finished
    assert _messages_taken(text) == done  # and acked: the rest is still in the queue, none held
    assert depth(queue_cfg["url"], queue_cfg["queue"]) == (n - done, 0)
    assert len(whole_skus(store, "TM", 1)) == done
