ALTER TABLE engine_worker_model DROP COLUMN kv_cells, DROP COLUMN weights_bytes;
